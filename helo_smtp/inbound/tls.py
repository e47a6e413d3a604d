"""The server TLS context for STARTTLS (587, 2587) and implicit TLS (465, RFC 8314)."""

from __future__ import annotations

import ssl

from helo_smtp.config import TLSConfig
from helo_smtp.errors import ConfigError


def server_context(cfg: TLSConfig) -> ssl.SSLContext:
    """TLS 1.2 or later, the configured chain and key; clients are not asked for certificates."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"tls: cannot load cert_file '{cfg.cert_file}' / key_file "
                          f"'{cfg.key_file}': {exc.strerror or exc}; they must be a PEM "
                          "certificate chain and its private key, readable by this user "
                          "(move them aside and run 'helo-smtp init' for a self-signed "
                          "pair)") from None
    return ctx
