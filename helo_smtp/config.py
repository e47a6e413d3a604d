"""The config file: one TOML file parsed with ``tomllib`` into frozen dataclasses.

Every setting is declared once, here, with its default and a one-line help (``_s``); the
generated ``docs/settings.md`` and ``check-config`` read the same declarations. Unknown keys and
wrong types are errors that name the key and the file. Relative paths are taken from the
directory the relay is started in.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helo_smtp.errors import ConfigError

DEFAULT_PATH = "config/helo-smtp.toml"
ENV_VAR = "HELO_SMTP_CONFIG"


def _s(default: Any, help: str) -> Any:
    """Declare a setting: its default and a one-line help."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


def _t(section: Callable[[], Any], help: str) -> Any:
    """Declare a table of settings (a section): its class and a one-line help."""
    return field(default_factory=section, metadata={"help": help})


@dataclass(frozen=True)
class ServerConfig:
    hostname: str = _s("localhost", "name in the banner, EHLO replies and Received lines")
    database: str = _s("var/helo-smtp.db",
                            "SQLite file path (or postgresql://... for several nodes)")
    node_id: str = _s("", "name of this node in leases, unique per node (empty: the host name)")
    free_space_margin_mb: int = _s(64, "refuse MAIL with 452 4.3.1 when the disk has less free")
    queue_high_water: int = _s(1_000_000, "pending transactional recipients above which "
                               "transactional mail gets 451 4.3.2 (broadcast volume never counts)")
    broadcast_high_water: int = _s(500_000, "pending broadcast recipients above which broadcast "
                                   "mail gets 451 4.3.2 (the lower of this and queue_high_water)")
    dev_bootstrap: bool = _s(False,
                             "dev only: create a dev account, verified domain and credential")
    shutdown_grace: float = _s(30.0, "seconds to let sessions and deliveries finish on SIGTERM")
    delivery_process: bool = _s(True, "serve delivers from a child process of its own, so "
                                "accepting and delivering each get a CPU core")


@dataclass(frozen=True)
class TLSConfig:
    cert_file: str = _s("var/tls/cert.pem", "PEM certificate chain for STARTTLS and port 465")
    key_file: str = _s("var/tls/key.pem", "PEM private key")
    handshake_timeout: float = _s(10.0, "seconds a client has to finish the TLS handshake")


@dataclass(frozen=True)
class ListenerConfig:
    address: str = _s("127.0.0.1", "address to bind")
    port: int = _s(587, "TCP port (0: any free port, for tests)")
    tls: str = _s("starttls", "starttls (offer STARTTLS) or implicit (TLS from the first byte)")
    mail_type: str = _s("header", "header (X-Helo-Mail-Type, default transactional), "
                        "transactional, broadcast, or bounces (DSN and complaint intake for "
                        "[bounces] domain, no AUTH)")
    name: str = _s("", "label for logs and metrics")


@dataclass(frozen=True)
class LimitsConfig:
    max_message_size: int = _s(26_214_400, "largest message in octets (SIZE and DATA)")
    max_connections: int = _s(1000, "simultaneous inbound connections, all listeners")
    max_connections_per_ip: int = _s(50, "simultaneous inbound connections from one IP")
    max_recipients: int = _s(50, "recipients per message (Helo: 50)")
    idle_timeout: float = _s(300.0, "seconds of client silence before 421 (RFC 5321 §4.5.3.2.7)")
    session_lifetime: float = _s(3600.0, "longest an inbound connection may stay open, seconds")
    command_call_limit: int = _s(5000, "commands of any verb per connection")
    auth_failures_per_connection: int = _s(3, "failed AUTH before 421 and close")
    auth_failure_window: float = _s(300.0, "seconds a failure counts against an IP or username")
    auth_failures_per_ip: int = _s(10, "failed AUTH from one IP within the window before lockout")
    auth_failures_per_user: int = _s(
        10, "failed AUTH for one username from one IP within the window before that username is "
        "locked from that IP; from all IPs together the username is only slowed")
    auth_slowdown_max: float = _s(
        5.0, "longest delay, seconds, before answering AUTH for a username over its failures")


@dataclass(frozen=True)
class DNSConfig:
    nameservers: list[str] = _s([], "resolver addresses; empty: the system resolver")
    port: int = _s(53, "resolver port")
    timeout: float = _s(5.0, "seconds for one DNS lookup")
    cache_max_ttl: float = _s(300.0, "longest a DNS answer is cached, seconds")


@dataclass(frozen=True)
class DeliveryConfig:
    port: int = _s(25, "remote SMTP port (tests point this at local sinks)")
    require_tls_domains: list[str] = _s([], "domains that get mail only over STARTTLS with a "
                                        "certificate valid for the MX name")
    tls_ca_file: str = _s("", "extra CA bundle (PEM) trusted when verifying MX certificates "
                          "(require_tls_domains, MTA-STS enforce) and MTA-STS policy hosts "
                          "(empty: system CAs only)")
    mta_sts: bool = _s(True, "honour recipient domains' MTA-STS policies (RFC 8461)")
    mta_sts_port: int = _s(443, "HTTPS port of MTA-STS policy hosts (tests use a local one)")
    connect_timeout: float = _s(30.0, "seconds to connect and read the banner")
    command_timeout: float = _s(60.0, "seconds for each reply (EHLO, MAIL, RCPT)")
    data_timeout: float = _s(600.0, "seconds for the reply after the final dot")
    total_deadline: float = _s(900.0, "longest one delivery may take, all stages")
    retry_base: float = _s(300.0, "first retry delay, seconds; doubles each attempt")
    retry_cap: float = _s(14_400.0, "longest retry delay, seconds")
    transactional_lifetime: float = _s(432_000.0, "seconds before transactional mail expires")
    broadcast_lifetime: float = _s(172_800.0, "seconds before broadcast mail expires")
    lease_seconds: float = _s(300.0, "a dead node's heartbeat, claimed recipients and "
                              "connection slots lapse this long after their last renewal")
    batch_size: int = _s(200, "recipients claimed per queue round trip")
    max_mx_addresses: int = _s(5, "addresses tried per delivery attempt")
    idle_connection_seconds: float = _s(30.0, "keep an idle outbound connection for reuse "
                                        "(on PostgreSQL it keeps its cluster slot meanwhile)")
    relayhost: str = _s("", "send all mail through this smarthost: \"host:port\" (MX lookup "
                        "of host) or \"[host]:port\" (no MX lookup), as Postfix's relayhost; "
                        "empty: straight to each recipient's MX")
    relayhost_username: str = _s("", "SMTP AUTH username at the relayhost (empty: no AUTH)")
    relayhost_password: str = _s("", "SMTP AUTH password at the relayhost")
    relayhost_tls: str = _s("starttls", "starttls (required, as Postfix's 'encrypt'), implicit "
                            "(TLS from the first byte) or none")
    routes: dict[str, str] = _s({}, "[delivery.routes]: recipient domain = \"host:port\" or "
                                "\"[host]:port\", before relayhost (Postfix transport_maps)")


@dataclass(frozen=True)
class DevConfig:
    inbox: bool = _s(False, "dev mode: deliver all mail to the built-in catch-all inbox "
                     "('helo-smtp dev inbox'), never to the Internet")
    inbox_dir: str = _s("var/dev-inbox", "Maildir the dev inbox keeps messages in")


@dataclass(frozen=True)
class PoolConfig:
    source_addresses: list[str] = _s([], "source IPs bound for outgoing connections, round-robin")
    helo_name: str = _s("", "EHLO name (empty: server.hostname)")
    max_connections: int = _s(200, "simultaneous outbound connections for this pool")
    per_domain_connections: int = _s(10, "simultaneous connections to one destination domain")
    rate: float = _s(0.0, "messages per second for the whole pool (0: unpaced)")
    per_domain_rate: float = _s(0.0, "messages per second to one destination domain (0: unpaced)")


def _broadcast_pool() -> PoolConfig:
    return PoolConfig(max_connections=50, per_domain_connections=5, rate=50.0, per_domain_rate=5.0)


@dataclass(frozen=True)
class PoolsConfig:
    transactional: PoolConfig = _t(PoolConfig, "pool for transactional mail")
    broadcast: PoolConfig = _t(_broadcast_pool, "pool for broadcast mail")


@dataclass(frozen=True)
class HTTPConfig:
    listen: str = _s("127.0.0.1:8025", "host:port of the tracking/unsubscribe/metrics server "
                     "(empty: off)")
    public_url: str = _s("", "base URL recipients reach the HTTP side at (empty: no tracking)")
    secret: str = _s("", "HMAC key for tracking tokens (empty: generated into the database)")
    unsubscribe_mailto: str = _s("", "address for the mailto: List-Unsubscribe (empty: none)")
    max_connections: int = _s(512, "simultaneous HTTP connections (also capped to leave the SMTP "
                              "side its file descriptors)")
    header_timeout: float = _s(10.0, "seconds a client has to send a whole request head")
    idle_timeout: float = _s(30.0, "seconds of client silence before an HTTP connection is closed")


@dataclass(frozen=True)
class RetentionConfig:
    body_days: float = _s(30.0, "drop a message's raw bytes this many days after its last "
                          "recipient reached a final state (0: keep forever)")
    metadata_days: float = _s(90.0, "then drop the message, its recipients, attempts and events "
                              "(0: keep forever)")
    interval: float = _s(300.0, "seconds between background retention passes (0: only "
                         "'helo-smtp purge')")
    batch_size: int = _s(100, "messages per retention transaction (small: never blocks accept)")
    pause: float = _s(0.05, "seconds between two retention batches")


@dataclass(frozen=True)
class APIConfig:
    listen: str = _s("", "host:port of the HTTP send API (empty: off)")
    tls: bool = _s(True, "serve the API over TLS with the [tls] certificate")
    behind_proxy: bool = _s(False, "allow tls = false off loopback; trust X-Forwarded-For "
                            "from trusted_proxies")
    trusted_proxies: list[str] = _s([], "proxy addresses whose X-Forwarded-For is trusted")
    max_body_bytes: int = _s(52_428_800, "largest request body (a batch: 50 MB, SPEC 11)")
    header_timeout: float = _s(10.0, "seconds a client has to send the request headers")
    idle_timeout: float = _s(75.0, "seconds a keep-alive connection may stay idle")
    auth_failures_per_ip: int = _s(10, "failed API keys per client IP per window, then 401s")
    auth_failure_window: float = _s(300.0, "seconds the per-IP failure window lasts")


@dataclass(frozen=True)
class LoggingConfig:
    format: str = _s("kv", "kv (key=value) or json")
    level: str = _s("INFO", "DEBUG, INFO, WARNING or ERROR")


@dataclass(frozen=True)
class EventsConfig:
    retention_days: float = _s(30.0, "events (and finished webhook deliveries) older than this "
                               "are deleted by a background purge (0: kept forever)")


@dataclass(frozen=True)
class WebhooksConfig:
    first_retry_seconds: float = _s(60.0, "first webhook retry delay; doubles each attempt "
                                    "(jittered)")
    retry_for_seconds: float = _s(86_400.0, "how long a webhook delivery is retried before it "
                                  "is failed, and how long an endpoint may fail before it is "
                                  "disabled")
    timeout_seconds: float = _s(10.0, "seconds one webhook POST may take")
    max_concurrency: int = _s(4, "default simultaneous POSTs to one endpoint (per endpoint: "
                              "webhooks create --max-concurrency)")
    allow_private: bool = _s(False, "allow webhook URLs that resolve to loopback, private or "
                             "link-local addresses (tests, internal receivers)")
    poll_seconds: float = _s(1.0, "how often the dispatcher looks for due deliveries")


@dataclass(frozen=True)
class BouncesConfig:
    domain: str = _s("", "bounce domain: outbound MAIL FROM becomes b+<token>@<domain> (VERP) "
                     "and a mail_type = \"bounces\" listener takes DSNs and complaints for it "
                     "(empty: off)")
    secret: str = _s("", "HMAC key for return-path tokens (empty: generated into the database)")


def _default_listeners() -> list[ListenerConfig]:
    return [
        ListenerConfig("0.0.0.0", 587, "starttls", "header", "submission"),
        ListenerConfig("0.0.0.0", 465, "implicit", "header", "submissions"),
        ListenerConfig("0.0.0.0", 2587, "starttls", "broadcast", "broadcast"),
    ]


@dataclass(frozen=True)
class Config:
    server: ServerConfig = _t(ServerConfig, "the relay")
    tls: TLSConfig = _t(TLSConfig, "inbound TLS")
    listeners: list[ListenerConfig] = field(default_factory=_default_listeners,
                                            metadata={"help": "SMTP listeners"})
    limits: LimitsConfig = _t(LimitsConfig, "inbound limits")
    dns: DNSConfig = _t(DNSConfig, "resolver for MX and checks")
    delivery: DeliveryConfig = _t(DeliveryConfig, "outbound delivery")
    pools: PoolsConfig = _t(PoolsConfig, "IP pools")
    http: HTTPConfig = _t(HTTPConfig, "HTTP side")
    api: APIConfig = _t(APIConfig, "HTTP send API")
    logging: LoggingConfig = _t(LoggingConfig, "logs")
    dev: DevConfig = _t(DevConfig, "local development (dev inbox)")
    retention: RetentionConfig = _t(RetentionConfig, "how long mail is kept")
    events: EventsConfig = _t(EventsConfig, "event log")
    webhooks: WebhooksConfig = _t(WebhooksConfig, "webhook delivery")
    bounces: BouncesConfig = _t(BouncesConfig, "return path and bounce intake")
    source: str = field(default="", metadata={"help": "file this config was read from",
                                              "internal": True})

    def pool(self, mail_type: str) -> PoolConfig:
        return getattr(self.pools, str(mail_type))


_CHOICES = {
    "tls": ("starttls", "implicit"),
    "mail_type": ("header", "transactional", "broadcast", "bounces"),
    "format": ("kv", "json"),
    "level": ("DEBUG", "INFO", "WARNING", "ERROR"),
    "relayhost_tls": ("starttls", "implicit", "none"),
}


def config_path(explicit: str | None = None) -> str:
    """The file in use: ``--config``, else ``$HELO_SMTP_CONFIG``, else the default."""
    return explicit or os.environ.get(ENV_VAR) or DEFAULT_PATH


def load(path: str | os.PathLike[str]) -> Config:
    """Read and validate a config file; raise ``ConfigError`` naming the file and key."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file (run 'helo-smtp init' or pass --config)"
                          ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    return from_dict(data, str(p))


def from_dict(data: dict[str, Any], source: str = "<dict>") -> Config:
    """Build a Config from parsed TOML (used by tests to write configs in code)."""
    data = {k: v for k, v in data.items() if k != "source"}
    cfg = _build(Config, data, source, "")
    return dataclasses.replace(cfg, source=source)


def _build(cls: type, data: Any, source: str, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: [{prefix.rstrip('.')}] must be a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{source}: unknown key '{prefix}{unknown[0]}'")
    defaults = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {name: _convert(hints[name], value, source, f"{prefix}{name}",
                             _section_default(defaults[name]))
              for name, value in data.items()}
    return cls(**kwargs)


def _section_default(f: dataclasses.Field[Any]) -> Any:
    """The default of a field that is a table of its own (``[pools.broadcast]``), else None.

    A table in the file is merged over this value, not over its class's defaults, so a
    section whose defaults differ from its type's (the broadcast pool) keeps them for every
    key the file leaves out."""
    if f.default_factory is dataclasses.MISSING:
        return None
    value = f.default_factory()
    return value if dataclasses.is_dataclass(value) else None


def _convert(tp: Any, value: Any, source: str, key: str, base: Any = None) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        built = _build(tp, value, source, key + ".")
        if base is None:
            return built
        return dataclasses.replace(base, **{k: getattr(built, k) for k in value})
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{source}: '{key}' must be a list")
        return [_convert(item, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, item = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: [{key}] must be a table")
        return {str(k): _scalar(item, v, source, f"{key}.{k}") for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{source}: '{key}' has an unsupported type")
    return _scalar(tp, value, source, key)


def _scalar(tp: type, value: Any, source: str, key: str) -> Any:
    ok = isinstance(value, tp) and not (tp is not bool and isinstance(value, bool))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ConfigError(f"{source}: '{key}' must be {tp.__name__}, not {type(value).__name__}")
    choices = _CHOICES.get(key.rsplit(".", 1)[-1].split("[")[0])
    if choices and tp is str and value not in choices:
        raise ConfigError(f"{source}: '{key}' must be one of {', '.join(choices)}")
    if tp in (int, float) and value < 0:
        raise ConfigError(f"{source}: '{key}' must not be negative")
    return value


def settings_table(cls: type = Config, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, help) for every setting, for docs and check-config."""
    rows: list[tuple[str, str, str, str]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        tp, key = hints[f.name], f"{prefix}{f.name}"
        if dataclasses.is_dataclass(tp):
            rows += settings_table(tp, key + ".")
        elif typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            rows += settings_table(typing.get_args(tp)[0], f"[[{key}]].")
        else:
            rows.append((key, _type_name(tp), _default_text(f), f.metadata.get("help", "")))
    return rows


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is list:
        return f"list of {typing.get_args(tp)[0].__name__}"
    if typing.get_origin(tp) is dict:
        return f"table of {typing.get_args(tp)[1].__name__}"
    return tp.__name__


def _default_text(f: dataclasses.Field[Any]) -> str:
    value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return repr(value).replace("'", '"')


def to_dict(cfg: Config) -> dict[str, Any]:
    """The effective config as plain data (for ``check-config``)."""
    return dataclasses.asdict(cfg)
