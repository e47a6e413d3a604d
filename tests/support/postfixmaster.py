"""The ``master.cf`` of a private Postfix instance (``postfix -c DIR``), shared by the test
suite's smarthost client (``tests/clients/postfixclient.py``) and the benchmark's comparison
relay (``bench/postfix.py``).

chroot is off everywhere ("n" in column 5) so no chroot jail needs populating; the one ``inet``
service is smtpd on ``listen`` (``address:port``, a loopback high port), never port 25.
"""

from __future__ import annotations

_SERVICES = """\
{listen} inet  n - n - - smtpd
pickup     unix  n - n 60 1 pickup
cleanup    unix  n - n - 0 cleanup
qmgr       unix  n - n 300 1 qmgr
tlsmgr     unix  - - n 1000? 1 tlsmgr
rewrite    unix  - - n - - trivial-rewrite
bounce     unix  - - n - 0 bounce
defer      unix  - - n - 0 bounce
trace      unix  - - n - 0 bounce
verify     unix  - - n - 1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n - - proxymap
proxywrite unix  - - n - 1 proxymap
smtp       unix  - - n - - smtp
relay      unix  - - n - - smtp
showq      unix  n - n - - showq
error      unix  - - n - - error
retry      unix  - - n - - error
discard    unix  - - n - - discard
anvil      unix  - - n - 1 anvil
scache     unix  - - n - 1 scache
postlog    unix-dgram n - n - 1 postlogd
"""


def master_cf(listen: str) -> str:
    """master.cf text with smtpd listening on ``listen`` (``"127.0.0.1:2525"``)."""
    return _SERVICES.format(listen=listen)
