"""The envelope sender of outbound mail (SPEC §13).

Without ``[bounces] domain`` the app's own sender is the return path (as before). With it,
every recipient gets its own transaction with ``MAIL FROM:<b+<token>@<bounce domain>>`` (VERP,
``bounces/verp.py``), so a later bounce or complaint names its recipient row exactly. Postfix
does the same with VERP (one delivery per recipient). The bytes, DKIM signature included, are
the same for every recipient: only the envelope differs.
"""

from __future__ import annotations

from helo_smtp.bounces.verp import Verp
from helo_smtp.config import BouncesConfig
from helo_smtp.outbound.delivery import Envelope
from helo_smtp.ports import Secrets


class ReturnPath:
    def __init__(self, cfg: BouncesConfig, settings: Secrets) -> None:
        self.cfg = cfg
        self.settings = settings
        self._verp: Verp | None = None

    def apply(self, envelopes: list[Envelope]) -> list[Envelope]:
        if not self.cfg.domain:
            return envelopes
        if self._verp is None or self._verp.domain != self.cfg.domain.lower():
            self._verp = Verp.load(self.cfg.domain, self.cfg.secret, self.settings)
        verp = self._verp
        return [Envelope(verp.address(rid), [(rid, addr)], env.data)
                for env in envelopes for rid, addr in env.rcpts]
