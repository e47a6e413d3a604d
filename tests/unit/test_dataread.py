"""The DATA reader on a real asyncio StreamReader fed as the transport would feed it: the end of
data, transparency, line ends, the size limit, line folding, and what stays for the next
command, whatever the chunk boundaries."""

from __future__ import annotations

import asyncio

import pytest

from helo_smtp.errors import MessageTooLarge
from helo_smtp.inbound import dataread, headers
from tests.inbound.test_smuggling import FAKE_ENDS
from tests.reliability.roundtrip import normalised, stuffed


async def _read(wire: bytes, limit: int | None = None, step: int = 0,
                eof: bool = False) -> tuple[bytes, bytes]:
    """(content, what the reader still holds), ``wire`` fed in ``step``-octet pieces."""
    reader = asyncio.StreamReader(limit=1001)  # aiosmtpd's stream limit

    async def feed() -> None:
        pieces = [wire[i:i + step] for i in range(0, len(wire), step)] if step else [wire]
        for piece in pieces:
            reader.feed_data(piece)
            await asyncio.sleep(0)
        if eof:
            reader.feed_eof()

    feeder = asyncio.create_task(feed())
    try:
        content = await dataread.read(reader, limit)
    finally:
        await feeder
    if not reader.at_eof():
        reader.feed_eof()
    return content, await reader.read()


@pytest.mark.parametrize("step", [0, 1, 2, 3, 5, 7])
async def test_only_crlf_dot_crlf_ends_and_the_rest_stays_for_the_next_command(step):
    original = b"a\n.\nb" + b"x".join(FAKE_ENDS) + b"\r\n.dot\r\nlast\r\n"
    content, rest = await _read(stuffed(original) + b"QUIT\r\n", step=step)
    assert rest == b"QUIT\r\n"
    assert content == normalised(original) and b"\r\n.dot\r\n" in content


@pytest.mark.parametrize("step", [0, 1, 2])
async def test_the_data_starts_at_a_line_start(step):
    assert await _read(b".\r\nNOOP\r\n", step=step) == (b"", b"NOOP\r\n")
    assert await _read(b"..x\r\n.\r\n", step=step) == (b".x\r\n", b"")
    assert await _read(b"\r\n.\r\n", step=step) == (b"\r\n", b"")


async def test_transparency_after_crlf_and_after_a_bare_lf():
    # RFC 5321 §4.5.2 at CRLF line starts; after a bare LF smtplib doubles a leading dot and
    # curl without --crlf does not: a doubled dot loses one, a single dot is content
    content, _ = await _read(b".c\r\n...d\n.e\n..f\r\r\n..g\n\r\n.\r\n")
    assert content == b"c\r\n..d\r\n.e\r\n.f\r\n\r\n.g\r\n\r\n"
    content, _ = await _read(b"\n..a\n..\n..\n...b\r\n.\r\n")  # adjacent, and first
    assert content == b"\r\n.a\r\n.\r\n.\r\n..b\r\n"


async def test_bare_lf_message_of_any_length_is_read_and_normalised():
    lines = [b"line %d " % i + b"x" * 60 for i in range(20_000)]  # about 1.4 MB, LF only
    content, _ = await _read(b"\n".join(lines) + b"\r\n.\r\n", step=65536)
    assert content == b"\r\n".join(lines) + b"\r\n"


async def test_size_limit_counts_the_octets_as_sent_and_drops_the_rest():
    body = b"y" * 98 + b"\r\n"  # 100 octets
    assert (await _read(body + b".\r\nNOOP\r\n", limit=100))[0] == body
    for step in (0, 1, 7):
        with pytest.raises(MessageTooLarge):
            await _read(b"y" + body + b".\r\nNOOP\r\n", limit=100, step=step)
    with pytest.raises(MessageTooLarge):  # far past the limit, no line end at all
        await _read(b"z" * 50_000 + b"\r\n.\r\n", limit=100, step=4096)


async def test_end_of_stream_inside_data_is_a_lost_connection():
    with pytest.raises(ConnectionResetError):
        await _read(b"From: a@b\r\n\r\nno end\r\n", eof=True)


def test_already_crlf_content_is_returned_as_is():
    data = b"A: 1\r\n\r\nbody\r\n"
    assert headers.normalise_line_ends(data) is data
    assert headers.normalise_line_ends(b"a\r\r\nb\rc\n") == b"a\r\n\r\nb\r\nc\r\n"


def test_lines_up_to_1000_octets_with_crlf_are_kept_longer_ones_folded():
    kept = b"k" * 998 + b"\r\n"  # 1000 octets with the CRLF: RFC 5321 §4.5.3.1.6
    assert dataread.fold_long_lines(kept * 3) == kept * 3
    hard = dataread.fold_long_lines(b"h" * 999 + b"\r\n")
    assert hard == b"h" * 997 + b"\r\n " + b"hh\r\n"
    words = b" ".join([b"word"] * 500)  # 2499 octets: broken before a space, nothing added
    folded = dataread.fold_long_lines(b"Subject: " + words + b"\r\n\r\nbody\r\n")
    assert max(map(len, folded.split(b"\r\n"))) <= 998
    assert folded.replace(b"\r\n ", b" ") == b"Subject: " + words + b"\r\n\r\nbody\r\n"


def test_a_hard_fold_does_not_split_a_utf8_character():
    line = "é".encode() * 600  # 1200 octets, no space
    folded = dataread.fold_long_lines(line + b"\r\n")
    pieces = folded.split(b"\r\n")[:-1]
    assert all(len(p) <= 998 for p in pieces) and len(pieces) == 2
    assert pieces[0].decode() + pieces[1][1:].decode() == "é" * 600
