"""SASL PLAIN and LOGIN (RFC 4616, draft-murchison-sasl-login) for ``protocol.HeloSMTP``:
decode the client's responses without logging them; the credential check is ``auth.py``."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from aiosmtpd.smtp import AuthResult

from helo_smtp.errors import CATALOG
from helo_smtp.inbound import auth


class SaslMechanisms:
    """aiosmtpd's ``auth_<MECH>`` hooks; mixed into the SMTP session class."""

    _reader: asyncio.StreamReader
    inbound: Any  # protocol.Doors

    # push() and close_with() are the session's own (protocol.HeloSMTP).

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        blob = await self._response(args, b"")
        creds = auth.split_plain(blob) if blob is not None else None
        if creds is None:
            if blob is not None:
                await self.push(CATALOG["bad_auth_data"].line())
            return AuthResult(success=False, handled=True)
        return await self.inbound.authenticator.check(self, *creds)

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        login = await self._response(args, b"Username:")
        if login is None:
            return AuthResult(success=False, handled=True)
        password = await self._response([], b"Password:")
        if password is None:
            return AuthResult(success=False, handled=True)
        return await self.inbound.authenticator.check(self, login, password)

    async def _response(self, args: list[str], challenge: bytes) -> bytes | None:
        """The initial response (``args[1]``) or the answer to a 334 challenge, decoded.
        None after writing the error reply (or when the client went away)."""
        if len(args) > 1:
            blob: bytes = args[1].encode("ascii", "replace")
        else:
            await self.push(b"334 " + base64.b64encode(challenge))
            try:
                line = await self._reader.readline()
            except ValueError:  # longer than the stream limit: not a SASL response
                # The rest of the line is still on its way: read on, and each piece would be
                # answered as a command (an extra 500 per piece, replies out of step with
                # the client's commands). Drop the rest of the line, answer once and close.
                await auth.drop_rest_of_line(self._reader)
                self.close_with(CATALOG["line_too_long"])
                return None
            if not line.endswith(b"\n"):
                return None  # connection closed mid-AUTH
            blob = line.strip()
            if blob == b"*":
                await self.push(CATALOG["auth_aborted"].line())
                return None
        decoded = auth.decode_b64(blob)
        if decoded is None:
            await self.push(CATALOG["bad_auth_data"].line())
        return decoded
