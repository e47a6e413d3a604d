"""SIGHUP applies every setting it reports as reloaded, and names in ``event=reload_partial``
each one that needs a restart. Every key of docs/settings.md is changed once, on a running
relay, and is either live in the component that uses it after the reload, or named as kept.
A real ``serve`` process then shows the bug this fixes: a new ``[dns]`` is used at once."""

from __future__ import annotations

import logging
import re
import signal
from pathlib import Path
from typing import Any

import pytest

from helo_smtp import config as config_mod
from helo_smtp.models import MailType
from helo_smtp.runtime import logs, reloadplan
from tests.ops.test_serve import message, submit
from tests.support.configfile import dumps, write_config
from tests.support.net import NET
from tests.support.outbound import capture_log
from tests.support.relay import RelayHandle, base_config
from tests.support.waiting import wait_for

ROOT_DIR = Path(__file__).resolve().parents[2]


def settings_keys() -> list[str]:
    """The keys docs/settings.md documents, as ``section.key`` / ``[[listeners]].key``."""
    out, section = [], ""
    for line in (ROOT_DIR / "docs" / "settings.md").read_text().splitlines():
        if m := re.match(r"^## `(.+)`$", line):
            section = m.group(1)
            section = section if section.startswith("[[") else section.strip("[]")
        elif m := re.match(r"^\| `([a-z_]+)` \|", line):
            out.append(f"{section}.{m.group(1)}")
    return out


def _other(key: str, value: Any, cert: str) -> Any:
    """A different valid value for ``key``."""
    special = {
        "delivery.tls_ca_file": cert, "delivery.relayhost": "[127.0.0.1]:2525",
        "delivery.routes": {"routed.test": "[127.0.0.1]:2526"},
        "server.hostname": "relay2.test", "http.public_url": "http://127.0.0.1:9",
        "http.listen": "127.0.0.1:1", "dns.nameservers": ["127.0.0.2"],
        "logging.format": "json", "logging.level": "WARNING", "tls.cert_file": "var/other-cert.pem",
        "tls.key_file": "var/other-key.pem", "delivery.relayhost_tls": "implicit",
    }
    if key in special:
        return special[key]
    if key.endswith("source_addresses"):
        return [NET + "4"]
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 1.5
    if isinstance(value, list):
        return [*value, "added.test"]
    if key.endswith(".tls"):
        return "implicit" if value == "starttls" else "starttls"
    if key.endswith(".mail_type"):
        return "broadcast" if value != "broadcast" else "transactional"
    return f"{value}-changed"


def _live(handle: RelayHandle, key: str) -> Any:
    """The value the running component holds for an applied ``key``."""
    relay = handle.relay
    section, _, name = key.partition(".")
    worker = relay.workers[MailType.TRANSACTIONAL]
    if section == "server":
        return getattr(relay.inbound.capacity.server, name)
    if section == "limits":
        return getattr(relay.inbound.guard.limits, name)
    if section == "dns":
        return getattr(relay.resolver.mx.cfg, name)
    if key.endswith("_lifetime"):  # the expiry of mail accepted from now on
        return relay.store.queue.lifetimes[MailType(name.removesuffix("_lifetime"))]
    if key in ("delivery.relayhost", "delivery.routes"):
        hop = relay.resolver.routing.hop("routed.test")
        return hop and f"[{hop.host}]:{hop.port}"
    if section == "logging":
        logger = logging.getLogger(logs.ROOT)
        if name == "level":
            return logging.getLevelName(logger.level)
        return {"KVFormatter": "kv", "JSONFormatter": "json"}[
            type(logger.handlers[-1].formatter).__name__]
    node: Any = worker.cfg  # delivery, pools, http: read by the workers at each delivery
    for part in key.split("."):
        node = getattr(node, part)
    return node


@pytest.fixture
def restore_logging():
    yield
    logs.reset()
    for name in (logs.ROOT, logs.AIOSMTPD):
        logging.getLogger(name).setLevel(logging.NOTSET)
        logging.getLogger(name).propagate = True


def test_every_setting_is_applied_or_named(tmp_path, dns_server, mx_port, server_cert,
                                           restore_logging):
    cfg = base_config(tmp_path, dns_port=dns_server.port, mx_port=mx_port, cert=server_cert)
    path = write_config(tmp_path / "relay.toml", cfg)
    handle = RelayHandle(config_mod.load(path))
    data = config_mod.to_dict(handle.relay.cfg)
    data.pop("source")
    keys = settings_keys()
    assert len(keys) == len(config_mod.settings_table()) > 60
    kept, applied = [], []
    try:
        for key in keys:
            if key.startswith("[["):
                table, _, name = key.partition("].")
                item = data[table.strip("[]")][0]
                item[name] = _other(key, item[name], server_cert[0])
            else:
                section, _, name = key.rpartition(".")
                node = data
                for part in section.split("."):
                    node = node[part]
                node[name] = _other(key, node[name], server_cert[0])
            path.write_text(dumps(data))
            with capture_log("helo_smtp.daemon", logging.INFO) as log:
                handle.run(_call(handle.relay.reload))
            lines = [r.getMessage() for r in log.records]
            assert not any("reload_failed" in x for x in lines), (key, lines)
            if reloadplan.needs_restart(key):
                partial = [x for x in lines if "event=reload_partial" in x]
                assert partial and key in partial[0].split("restart_needed=")[1].split()[0], (
                    key, lines)
                kept.append(key)
            else:
                assert any(f"changed={key}" in x for x in lines), (key, lines)
                want = config_mod.load(path)
                expected = _value(want, key)
                got = _live(handle, key)
                if key in ("delivery.relayhost", "delivery.routes"):
                    expected = "[127.0.0.1]:2526" if key == "delivery.routes" else (
                        "[127.0.0.1]:2525")
                assert got == expected, (key, got, expected)
                applied.append(key)
    finally:
        handle.stop()
    assert {"dns.nameservers", "dns.timeout", "delivery.relayhost", "logging.level"} <= set(
        applied)
    assert {"server.database", "tls.cert_file", "[[listeners]].port", "dev.inbox"} <= set(kept)


def _value(cfg: Any, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


async def _call(fn: Any) -> None:
    fn()


def test_sighup_applies_a_new_dns_at_once(serve, sinks, client_ctx, dns_server, tmp_path):
    # Start with a resolver that never answers: mail waits, deferred with a DNS failure.
    proc, path, tenant = serve(dns={"nameservers": ["127.0.0.1"], "port": 9, "timeout": 0.5},
                               delivery={"retry_base": 1.0, "retry_cap": 1.0})
    proc.wait_ready()
    submit(proc.ports["submission"], client_ctx, tenant, message(tenant, "before"))
    proc.wait_log(r"event=delivery .*state=deferred")
    text = path.read_text().replace("port = 9\n", f"port = {dns_server.port}\n")
    assert text != path.read_text()
    path.write_text(text)
    proc.signal(signal.SIGHUP)
    proc.wait_log(r"event=reloaded changed=dns\.port")
    submit(proc.ports["submission"], client_ctx, tenant, message(tenant, "after"))
    wait_for(lambda: len(sinks[0].h.messages) >= 2, 30, what="both delivered via the new DNS")
    assert "reload_partial" not in proc.output
