"""Per-recipient message rewriting (SPEC §7, §8); the tokens are in ``tokens.py``.

``personalize`` returns the bytes for one recipient: on broadcast mail the RFC 8058 headers
``List-Unsubscribe`` (+ ``mailto:`` when configured) and ``List-Unsubscribe-Post``; with opens
tracked, a 1x1 pixel before ``</body>`` of every text/html part; with links tracked, every
http(s) ``href`` in text/html parts pointed at the click URL. It runs before DKIM signing. Only
the HTML parts it changes are re-encoded (same transfer encoding); every other byte is kept.
"""

from __future__ import annotations

import base64
import itertools
import re
from collections.abc import Callable
from email import quoprimime
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from email.policy import compat32
from html import escape
from html.parser import HTMLParser
from typing import Any

from helo_smtp.config import HTTPConfig
from helo_smtp.models import MailType
from helo_smtp.tracking.tokens import Links

MAX_TRACKED_URL = 2000  # longer links stay untracked: their click URL would not fit a request line
_MAX_DEPTH = 16  # nested multiparts deeper than this are left alone

# ---- personalize -------------------------------------------------------------------------

def needs_personalization(mail_type: MailType, track_opens: bool, track_links: bool,
                          http_cfg: HTTPConfig) -> bool:
    """True when each recipient must get their own copy (so one transaction per recipient)."""
    if not http_cfg.public_url:
        return False
    return mail_type == MailType.BROADCAST or track_opens or track_links


def personalize(raw: bytes, *, message_id: str, recipient: str, mail_type: MailType,
                track_opens: bool, track_links: bool, http_cfg: HTTPConfig,
                secret: bytes) -> bytes:
    """The message as sent to ``recipient`` (``raw`` itself when nothing applies)."""
    if not needs_personalization(mail_type, track_opens, track_links, http_cfg):
        return raw
    links = Links(http_cfg.public_url.rstrip("/"), secret, message_id, recipient)
    head, body = _split(raw)
    if track_opens or track_links:
        new = _edit_entity(head, body, links, track_opens, track_links, 0)
        if new is not None:
            head, body = _split(new)
    if mail_type == MailType.BROADCAST:
        head = _list_unsubscribe(head, links, http_cfg.unsubscribe_mailto)
    return head + b"\r\n" + body


def _list_unsubscribe(head: bytes, links: Links, mailto: str) -> bytes:
    """RFC 8058 §3.1: an HTTPS URI in List-Unsubscribe plus List-Unsubscribe-Post. Any client
    copies are replaced: the relay owns the suppression list the unsubscribe must land in."""
    value = f"<{links.unsubscribe_url()}>"
    if mailto:
        value += f",\r\n <{links.unsubscribe_mailto(mailto)}>"
    head = _drop_headers(head, ("list-unsubscribe", "list-unsubscribe-post"))
    return (head + f"List-Unsubscribe: {value}\r\n".encode()
            + b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")


# ---- MIME surgery on bytes ---------------------------------------------------------------

def _split(entity: bytes) -> tuple[bytes, bytes]:
    """(header block with its final CRLF, body); the blank line between is not in either."""
    if entity.startswith(b"\r\n"):
        return b"", entity[2:]
    i = entity.find(b"\r\n\r\n")
    if i < 0:
        return (entity if entity.endswith(b"\r\n") else entity + b"\r\n"), b""
    return entity[:i + 2], entity[i + 4:]


def _drop_headers(head: bytes, names: tuple[str, ...]) -> bytes:
    """The header block without the named fields (continuation lines go with their field)."""
    out, skipping = [], False
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                out.append(line)
            continue
        name = line.split(b":", 1)[0].strip().lower().decode("latin-1")
        skipping = name in names
        if not skipping:
            out.append(line)
    return b"".join(out)


def _edit_entity(head: bytes, body: bytes, links: Links, opens: bool, clicks: bool,
                 depth: int) -> bytes | None:
    """The rewritten entity, or None when it needs no change."""
    hdrs = BytesHeaderParser(policy=compat32).parsebytes(head + b"\r\n")
    if (hdrs.get("Content-Disposition") or "").strip().lower().startswith("attachment"):
        return None
    ctype = hdrs.get_content_type()
    if ctype.startswith("multipart/") and depth < _MAX_DEPTH:
        boundary = hdrs.get_boundary()
        new_body = _edit_multipart(body, boundary, links, opens, clicks, depth) if boundary \
            else None
        return None if new_body is None else head + b"\r\n" + new_body
    if ctype == "text/html":
        return _edit_html(head, body, links, opens, clicks)
    return None


def _edit_multipart(body: bytes, boundary: str, links: Links, opens: bool, clicks: bool,
                    depth: int) -> bytes | None:
    """Rewrite the parts between RFC 2046 §5.1.1 delimiters, keeping every other byte."""
    delim = re.compile(rb"(?:\A|\r\n)--" + re.escape(boundary.encode("latin-1"))
                       + rb"(--)?[ \t]*(?=\r\n|\Z)")
    marks = list(delim.finditer(body))
    pieces, last, changed = [], 0, False
    for cur, nxt in itertools.pairwise(marks):
        if cur.group(1):  # close delimiter: the rest is epilogue
            break
        start = min(cur.end() + 2, nxt.start())
        part = body[start:nxt.start()]
        ph, pb = _split(part)
        new = _edit_entity(ph, pb, links, opens, clicks, depth + 1)
        if new is not None:
            pieces += [body[last:start], new]
            last, changed = nxt.start(), True
    if not changed:
        return None
    return b"".join([*pieces, body[last:]])


def _edit_html(head: bytes, body: bytes, links: Links, opens: bool, clicks: bool
               ) -> bytes | None:
    part: Message = BytesParser(policy=compat32).parsebytes(head + b"\r\n" + body)
    cte = (part.get("Content-Transfer-Encoding") or "7bit").strip().lower()
    if cte not in ("7bit", "8bit", "binary", "quoted-printable", "base64"):
        return None
    charset = part.get_content_charset() or "us-ascii"
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return None
    try:
        html = data.decode(charset, "surrogateescape")
    except LookupError:  # a charset Python does not know: leave the part as it is
        return None
    new_html = rewrite_html(html, links.open_url() if opens else None,
                            links.click_url if clicks else None, links.base)
    if new_html == html:
        return None
    new_data = new_html.encode(charset, "surrogateescape")
    new_cte, encoded = _encode(new_data, cte)
    if new_cte != cte:
        head = (_drop_headers(head, ("content-transfer-encoding",))
                + f"Content-Transfer-Encoding: {new_cte}\r\n".encode())
    return head + b"\r\n" + encoded


def _encode(data: bytes, cte: str) -> tuple[str, bytes]:
    """Re-encode with the part's own transfer encoding; a 7bit/8bit part whose lines grew past
    RFC 5322's 998 octets becomes quoted-printable."""
    if cte == "base64":
        return cte, base64.encodebytes(data).replace(b"\n", b"\r\n")
    if cte == "quoted-printable" or any(len(ln) > 998 for ln in data.split(b"\r\n")):
        text = quoprimime.body_encode(data.decode("latin-1"), 76, "\r\n")
        return "quoted-printable", text.encode("ascii")
    return cte, data


# ---- HTML --------------------------------------------------------------------------------

_HREF = re.compile(r"""(\shref\s*=\s*)(?:"[^"]*"|'[^']*'|[^\s"'>]+)""", re.IGNORECASE)
_UNSUB = re.compile(r"unsubscribe|\bopt[- ]?out\b", re.IGNORECASE)
_NO_TRACK = ("data-helo-no-track", "data-pm-no-track")
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
_HTML_END = re.compile(r"</html\s*>", re.IGNORECASE)


class _LinkFinder(HTMLParser):
    """Finds ``<a>``/``<area>`` start tags: (offset, tag text, href, link text)."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", html)]
        self.links: list[tuple[int, str, str, str]] = []
        self._open: list[Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ("a", "area"):
            return
        self._close()
        names = {k for k, _ in attrs}
        href = next((v for k, v in attrs if k == "href"), None)
        text = self.get_starttag_text() or ""
        if href is None or names.intersection(_NO_TRACK) or not _HREF.search(text):
            return
        line, col = self.getpos()
        self._open = [self._line_starts[line - 1] + col, text, href, []]
        if tag == "area":
            self._close()

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open[3].append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._close()

    def _close(self) -> None:
        if self._open is not None:
            start, text, href, words = self._open
            self.links.append((start, text, href, "".join(words)))
            self._open = None

    def finish(self) -> list[tuple[int, str, str, str]]:
        self.close()
        self._close()
        return self.links


def _trackable(href: str, text: str, own_base: str) -> bool:
    """http(s) links only; never mailto:, never our own URLs, never an unsubscribe link (a
    tracked unsubscribe would count as a click and hides the real target from filters)."""
    url = href.strip()
    if len(url) > MAX_TRACKED_URL or not url.lower().startswith(("http://", "https://")):
        return False
    if own_base and url.startswith(own_base + "/"):
        return False
    return not (_UNSUB.search(url) or _UNSUB.search(text))


def rewrite_html(html: str, pixel_url: str | None, click_url: Callable[[str], str] | None,
                 own_base: str) -> str:
    """Point trackable links at ``click_url(original)`` and add the pixel before ``</body>``."""
    if click_url is not None:
        finder = _LinkFinder(html)
        finder.feed(html)
        pieces, last = [], 0
        for start, tag, href, text in finder.finish():
            if not _trackable(href, text, own_base) or html[start:start + len(tag)] != tag:
                continue
            new_tag = _HREF.sub(lambda m, u=href: f'{m.group(1)}"{escape(click_url(u.strip()))}"',
                                tag, count=1)
            pieces += [html[last:start], new_tag]
            last = start + len(tag)
        html = "".join([*pieces, html[last:]])
    if pixel_url is not None:
        img = (f'<img src="{escape(pixel_url)}" width="1" height="1" alt="" '
               'style="width:1px;height:1px;border:0" />')
        end = ([m.start() for m in _BODY_END.finditer(html)]
               or [m.start() for m in _HTML_END.finditer(html)] or [len(html)])[-1]
        html = html[:end] + img + html[end:]
    return html
