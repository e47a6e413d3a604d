"""The dev inbox: a built-in catch-all mailbox for local development (SPEC §15, ``[dev]``).

With ``[dev] inbox = true`` (``config/dev.toml``), the process that delivers runs a small SMTP
sink on loopback (``sink.py``) and ``outbound/routing.py`` sends every recipient there, so a
first message goes through the whole relay (rules, queue, tracking, DKIM signing, a real SMTP
session) and lands in a Maildir (``mailbox.py``) instead of the Internet.
``helo-smtp dev inbox`` lists it and ``helo-smtp dev inbox show ID`` prints a message
(``cli.py``), as Mailpit or Postfix's ``smtp-sink`` would let you look.
"""
