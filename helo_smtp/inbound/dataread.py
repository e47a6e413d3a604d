"""DATA content off the stream in chunks (RFC 5321 §4.1.1.4), instead of aiosmtpd 1.4.6's loop.

aiosmtpd reads DATA with ``readuntil(b"\\r\\n")`` under a 1001-octet stream limit: a message
with bare-LF line ends is one "line", refused as ``500 Line too long`` once it passes about
1000 octets, and every line costs a Python iteration. Here the bytes are taken as they arrive
and every step is a bytes operation over the whole message:

- only ``<CRLF>.<CRLF>`` ends the data; a bare CR or LF around the dot never does (SMTP
  smuggling). The data starts at a line start, so ``.<CRLF>`` first is an empty message;
- transparency is undone at CRLF line starts (RFC 5321 §4.5.2); after a bare LF only a
  doubled dot loses one: smtplib stuffs there, curl and most scripts do not, and a single
  leading dot is content either way (docs/decisions.md, "Bare-LF messages");
- the size limit counts the octets as sent (dot-stuffed, like ``SIZE=``, RFC 1870); past it
  the data is read to its end and dropped, so memory stays bounded;
- bare CR and LF become CRLF (SPEC §5), skipped when the data is already CRLF only;
- a line over 1000 octets with its CRLF (RFC 5321 §4.5.3.1.6) is folded, not refused
  (docs/decisions.md, "Over-long lines are folded").
"""

from __future__ import annotations

import asyncio
import itertools

from helo_smtp.errors import MessageTooLarge
from helo_smtp.inbound.headers import normalise_line_ends

END = b"\r\n.\r\n"
#: Octets of a line before its CRLF (RFC 5321 §4.5.3.1.6: 1000 with the CRLF).
MAX_LINE = 998
# read(n) returns what is buffered, up to n: large enough to take it all in one call.
_TAKE_ALL = 1 << 30


async def read(reader: asyncio.StreamReader, limit: int | None) -> bytes:
    """The message content of one DATA (CRLF only, unstuffed, lines folded to 1000 octets).

    Raises ``MessageTooLarge`` once the whole data has been read past ``limit`` octets, and
    ``ConnectionResetError`` when the stream ends first. Bytes after the end of data (the
    next pipelined commands) are left in ``reader``."""
    wire = await _until_end(reader, limit)
    if b"\n.." in wire:  # a doubled dot after a LF: see the module doc
        wire = _unstuff_after_bare_lf(wire)
    content = (b"\r\n" + wire).replace(b"\r\n.", b"\r\n")[2:]  # RFC 5321 §4.5.2
    return fold_long_lines(normalise_line_ends(content))


async def _until_end(reader: asyncio.StreamReader, limit: int | None) -> bytes:
    """The data as sent up to and with the CRLF before the final dot."""
    buf = bytearray(b"\r\n")  # the DATA command's own CRLF: the data starts at a line start
    scanned = dropped = 0
    while True:
        chunk = await reader.read(_TAKE_ALL)
        if not chunk:
            raise ConnectionResetError("end of stream inside DATA")
        buf += chunk
        end = buf.find(END, scanned)
        if end >= 0:
            _give_back(reader, buf[end + len(END):])
            if dropped or (limit and end > limit):
                raise MessageTooLarge()
            return bytes(buf[2:end + 2])
        scanned = max(0, len(buf) - len(END) + 1)  # an END may start in the last 4 octets
        if limit and dropped + len(buf) - len(END) > limit:  # too large whatever follows
            dropped += scanned
            del buf[:scanned]
            scanned = 0


def _unstuff_after_bare_lf(wire: bytes) -> bytes:
    """``\\n..`` becomes ``\\n.`` where the LF is bare; a Python step per such dot, not per line."""
    parts = wire.split(b"\n..")
    out = [parts[0]]
    for before, part in itertools.pairwise(parts):
        # an empty ``before`` follows another "\n..": the octet before this LF is a dot
        out += (b"\n.." if before.endswith(b"\r") else b"\n.", part)
    return b"".join(out)


def _give_back(reader: asyncio.StreamReader, rest: bytearray) -> None:
    """Put the octets after the end of data back for the command loop (pipelined commands,
    RFC 2920). ``read`` emptied the reader's buffer just before, so appending keeps order."""
    if rest and not reader.at_eof():
        reader.feed_data(bytes(rest))


def fold_long_lines(data: bytes) -> bytes:
    """Lines over ``MAX_LINE`` octets (CRLF line ends) broken before a space or tab where one
    is in reach (header folding, RFC 5322 §2.2.3: unfolding gives the line back), else
    by inserting CRLF + space, as Postfix's ``smtp_line_length_limit`` does."""
    if len(data) <= MAX_LINE:
        return data
    lines = data.split(b"\r\n")
    if max(map(len, lines)) <= MAX_LINE:
        return data
    return b"\r\n".join(_fold(line) if len(line) > MAX_LINE else line for line in lines)


def _fold(line: bytes) -> bytes:
    pieces = []
    while len(line) > MAX_LINE:
        cut = max(line.rfind(b" ", 1, MAX_LINE + 1), line.rfind(b"\t", 1, MAX_LINE + 1))
        if cut > 0:  # the next piece starts with the space: nothing is added but the CRLF
            pieces.append(line[:cut])
            line = line[cut:]
            continue
        cut = MAX_LINE - 1  # room for the space that starts the next piece
        while cut > MAX_LINE - 4 and 0x80 <= line[cut] < 0xC0:
            cut -= 1  # do not split a UTF-8 sequence
        pieces.append(line[:cut])
        line = b" " + line[cut:]
    pieces.append(line)
    return b"\r\n".join(pieces)
