"""Logging: one line per record, ``kv`` (key=value) or ``json``, with secrets redacted.

``setup(cfg.logging)`` is called once by ``helo-smtp serve``. It puts one handler on the
``helo_smtp`` logger and on aiosmtpd's ``mail.log`` logger; the handler formats every record
and first passes it through ``RedactFilter``, so no module (ours or aiosmtpd's) can write an
AUTH secret to the journal by accident:

- the base64 argument of ``AUTH PLAIN`` / ``AUTH LOGIN`` (RFC 4954 initial responses),
- any ``secret=`` / ``password=`` value,
- any string given to ``register_secret`` (and its base64 at every alignment, which covers the
  AUTH LOGIN continuation line and the PLAIN blob ``\\0user\\0secret`` wherever it is logged).

Messages are written as ``kv(event=..., key=value)``; ``kv`` quotes values with spaces so a
line always splits back into the same fields.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import sys
import threading
import time
from collections import OrderedDict
from typing import IO, Any

from helo_smtp.config import LoggingConfig

ROOT = "helo_smtp"
AIOSMTPD = "mail.log"  # aiosmtpd's logger: its warnings and session errors
REDACTED = "[redacted]"
MIN_SECRET = 6  # shorter strings would redact ordinary words
MAX_SECRETS = 65536  # registered strings kept (oldest dropped): bounded memory

# The initial response after AUTH PLAIN / AUTH LOGIN (RFC 4954 §4), not the next mechanism
# name of an EHLO line ("250 AUTH PLAIN LOGIN").
_MECHANISMS = r"(?:PLAIN|LOGIN|CRAM-MD5|DIGEST-MD5|XOAUTH2|OAUTHBEARER|EXTERNAL|GSSAPI|NTLM)"
_AUTH_RE = re.compile(
    rf"(?i)(\bAUTH\s+(?:PLAIN|LOGIN)\s+)(?!{_MECHANISMS}(?![A-Za-z0-9+/=]))([A-Za-z0-9+/=]+)")
_FIELD_RE = re.compile(
    r"""(?i)(\b(?:secret|password|passwd)\s*[=:]\s*)("(?:[^"\\]|\\.)*"|'[^']*'|[^\s,;]+)""")
_BARE_RE = re.compile(r'^[^\s"=\\]+$')
_KV_TOKEN = r'[A-Za-z_][\w.-]*=(?:"(?:[^"\\]|\\.)*"|[^\s"]*)'
_KV_TOKEN_RE = re.compile(_KV_TOKEN)
_KV_LINE_RE = re.compile(rf"\s*{_KV_TOKEN}(?:\s+{_KV_TOKEN})*\s*")

_B64_RUN = "[A-Za-z0-9+/_=-]*"


def _b64_cores(secret: str) -> set[str]:
    """Substrings every base64 text holding ``secret`` contains, at each of the 3 alignments.

    Base64 maps 3 bytes to 4 chars, so bytes at an offset ``k mod 3`` encode the same way
    whatever precedes them once the first partial group is dropped (and the last one, which
    depends on what follows).
    """
    raw = secret.encode("utf-8", "surrogateescape")
    cores = set()
    for k in range(3):
        enc = base64.b64encode(b"\0" * k + raw).decode()
        start = (k * 4 + 2) // 3 if k else 0  # chars touched by the k prefix bytes
        end = ((k + len(raw)) // 3) * 4  # full groups only
        core = enc[start:end]
        if len(core) >= 8:
            cores.add(core)
            cores.add(core.replace("+", "-").replace("/", "_"))  # URL-safe alphabet
    return cores


class _SecretIndex:
    """Registered strings, found in a line in time linear in the line, not in their number.

    Each string is filed under its first ``MIN_SECRET`` characters; ``find`` looks up every
    window of the text. Bounded: past ``MAX_SECRETS`` strings the oldest are forgotten.
    """

    def __init__(self) -> None:
        self._order: OrderedDict[str, None] = OrderedDict()
        self._by_key: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def add(self, s: str) -> None:
        with self._lock:
            self._order[s] = None
            self._order.move_to_end(s)
            self._by_key.setdefault(s[:MIN_SECRET], set()).add(s)
            while len(self._order) > MAX_SECRETS:
                old, _ = self._order.popitem(last=False)
                group = self._by_key.get(old[:MIN_SECRET], set())
                group.discard(old)
                if not group:
                    self._by_key.pop(old[:MIN_SECRET], None)

    def clear(self) -> None:
        with self._lock:
            self._order.clear()
            self._by_key.clear()

    def __len__(self) -> int:
        return len(self._order)

    def find(self, text: str) -> set[str]:
        if not self._by_key:
            return set()
        found: set[str] = set()
        by_key = self._by_key
        for i in range(len(text) - MIN_SECRET + 1):
            group = by_key.get(text[i:i + MIN_SECRET])
            if group:
                found.update(s for s in tuple(group) if text.startswith(s, i))
        return found


_secrets = _SecretIndex()


def register_secret(secret: str) -> None:
    """Never log ``secret`` (nor its base64). Cheap, safe from any thread; strings shorter than
    ``MIN_SECRET`` are ignored (they would redact ordinary words)."""
    if len(secret) < MIN_SECRET:
        return
    for s in (secret, *_b64_cores(secret)):
        _secrets.add(s)


def clear_secrets() -> None:
    _secrets.clear()


def redact(text: str) -> str:
    """``text`` with AUTH blobs, ``secret=``/``password=`` values and registered secrets
    replaced by ``[redacted]``."""
    text = _AUTH_RE.sub(lambda m: m.group(1) + REDACTED, text)
    text = _FIELD_RE.sub(lambda m: m.group(1) + REDACTED, text)
    for s in sorted(_secrets.find(text), key=len, reverse=True):
        # The whole base64 run goes, not just the core: its edges hold secret bits too.
        text = re.sub(f"{_B64_RUN}{re.escape(s)}{_B64_RUN}", REDACTED, text)
    return text


class RedactFilter(logging.Filter):
    """Rewrites each record's message (and traceback) through ``redact`` before formatting."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not drop the record
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        record.exc_info = None  # formatters use exc_text, already redacted
        return True


def _value(v: Any) -> str:
    s = "" if v is None else str(v)
    if s and _BARE_RE.match(s):
        return s
    return json.dumps(s, ensure_ascii=False)


def kv(**fields: Any) -> str:
    """``key=value key2="a value"``: values with spaces, quotes, ``=`` or nothing are quoted
    (JSON string escapes, so newlines stay on one line)."""
    return " ".join(f"{k}={_value(v)}" for k, v in fields.items())


def parse_kv(message: str) -> dict[str, str] | None:
    """The fields of a message made of ``key=value`` tokens only, else None."""
    if not _KV_LINE_RE.fullmatch(message):
        return None
    out: dict[str, str] = {}
    for tok in _KV_TOKEN_RE.findall(message):
        key, _, value = tok.partition("=")
        out[key] = json.loads(value) if value.startswith('"') else value
    return out


def _exc_text(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """The traceback, when the record has one (RedactFilter has already rendered it)."""
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    return record.exc_text or ""


def _timestamp(record: logging.LogRecord) -> str:
    t = time.gmtime(record.created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z"


class KVFormatter(logging.Formatter):
    """``time=... level=info logger=helo_smtp.daemon event=started pid=12``."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        head = kv(time=_timestamp(record), level=record.levelname.lower(), logger=record.name)
        body = message if parse_kv(message) is not None else kv(msg=message)
        line = f"{head} {body}" if body else head
        exc = _exc_text(self, record)
        if exc:
            line += " " + kv(exc=exc)
        return line


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, plus the message's kv fields."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        obj: dict[str, Any] = {"time": _timestamp(record), "level": record.levelname.lower(),
                               "logger": record.name, "message": message}
        for k, v in (parse_kv(message) or {}).items():
            obj.setdefault(k, v)
        exc = _exc_text(self, record)
        if exc:
            obj["exc"] = exc
        return json.dumps(obj, ensure_ascii=False)


_FORMATTERS: dict[str, type[logging.Formatter]] = {"kv": KVFormatter, "json": JSONFormatter}
_installed: list[tuple[logging.Logger, logging.Handler]] = []


def setup(logging_cfg: LoggingConfig, stream: IO[str] | None = None) -> logging.Handler:
    """Send ``helo_smtp`` (and aiosmtpd's warnings) to ``stream`` (default stderr, which systemd
    hands to the journal), one redacted line per record. Calling it again replaces the
    handler; returns it."""
    reset()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(RedactFilter())
    handler.setFormatter(_FORMATTERS[logging_cfg.format]())
    level = logging.getLevelName(logging_cfg.level)
    # aiosmtpd logs every command line at INFO: only its warnings are worth the journal
    # unless the operator asked for DEBUG.
    aio_level = level if level <= logging.DEBUG else max(level, logging.WARNING)
    for name, lvl in ((ROOT, level), (AIOSMTPD, aio_level)):
        logger = logging.getLogger(name)
        logger.setLevel(lvl)
        logger.addHandler(handler)
        logger.propagate = False  # one line per record, not a second copy via the root
        _installed.append((logger, handler))
    return handler


def reset() -> None:
    """Undo ``setup`` (tests; a second ``setup``)."""
    while _installed:
        logger, handler = _installed.pop()
        logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
