"""The few bytes the HTTP side serves besides redirects: the pixel and small HTML pages.

The pages load nothing from elsewhere and hold no client text except what is escaped here.
"""

from __future__ import annotations

import base64
from html import escape

#: A 1x1 transparent GIF89a (42 bytes).
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}}
button{{font-size:1rem;padding:.6rem 1.2rem}}</style>
</head><body>
<h1>{title}</h1>
{body}
</body></html>
"""


def _page(title: str, body: str) -> str:
    return _PAGE.format(title=escape(title), body=body)


def confirm_unsubscribe(recipient: str) -> str:
    """GET /u/<token>: a button that POSTs the RFC 8058 body to the same URL. Merely opening
    the page (a link scanner, a prefetch) unsubscribes no one."""
    return _page("Unsubscribe", (
        f"<p>Stop sending these emails to <strong>{escape(recipient)}</strong>?</p>\n"
        '<form method="post" action="">\n'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">\n'
        '<button type="submit">Unsubscribe</button>\n'
        "</form>"))


def unsubscribed(recipient: str) -> str:
    return _page("Unsubscribed", f"<p><strong>{escape(recipient)}</strong> will receive no "
                 "more of these emails.</p>")


def bad_request() -> str:
    return _page("Unsubscribe", "<p>This request is missing List-Unsubscribe=One-Click.</p>")


def not_found() -> str:
    return _page("Not found", "<p>This link is not valid.</p>")


def unavailable() -> str:
    return _page("Try again later", "<p>Your request could not be recorded just now. "
                 "Please try again in a few minutes.</p>")
