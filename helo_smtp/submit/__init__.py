"""The transport-free submission core: identity -> channel -> mail type -> rules -> one commit.

Both doors call it: the SMTP handler (``inbound/handler.py``) and the HTTP send API
(``api/``). A rule lives once (``inbound/policy.py``, ``inbound/message.py``), so both doors
answer a broken rule with the same ``errorCode`` from ``errors.py``.
"""
