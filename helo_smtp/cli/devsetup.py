"""Development bootstrap: with ``server.dev_bootstrap = true`` and no accounts yet, ``serve``
creates an account ``dev``, a sending domain, a channel ``dev`` and a credential, and prints the
credential once with a swaks command to send a first message.

This is the only code that marks a domain verified without the DNS proof of SPEC §2, and it
says so when it does: a development relay on localhost has no public zone to publish the
``_helo`` record in. Production configs leave ``dev_bootstrap`` off (its default).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from helo_smtp import keys, names
from helo_smtp.config import Config, ListenerConfig
from helo_smtp.models import Account, Channel, Domain
from helo_smtp.store import Store

DEV_NAME = "dev"
FALLBACK_DOMAIN = "dev.localhost"  # RFC 6761 §6.3: .localhost never leaves the machine


@dataclass(frozen=True, slots=True)
class DevTenant:
    account: Account
    domain: Domain
    channel: Channel
    username: str
    secret: str
    sender: str
    swaks: str


def dev_domain(hostname: str) -> str:
    """The part after @ of ``dev@<hostname>`` when that is a real domain, else dev.localhost."""
    try:
        ipaddress.ip_address(hostname)
        return FALLBACK_DOMAIN
    except ValueError:
        pass
    try:
        return names.domain_to_ascii(hostname)
    except ValueError:  # "localhost" and other single labels
        return FALLBACK_DOMAIN


def swaks_command(cfg: Config, username: str, secret: str, sender: str) -> str:
    lst = _submission_listener(cfg)
    host = "127.0.0.1" if lst is None or lst.address in ("0.0.0.0", "::") else lst.address
    port = 587 if lst is None else lst.port
    tls = "--tlsc" if lst is not None and lst.tls == "implicit" else "--tls"
    return (f"swaks --server {host}:{port} {tls} --auth PLAIN --auth-user {username} "
            f"--auth-password '{secret}' --from {sender} --to you@example.com")


def _submission_listener(cfg: Config) -> ListenerConfig | None:
    """A listener taking transactional mail, STARTTLS first (what most clients use)."""
    usable = [x for x in cfg.listeners if x.mail_type != "broadcast"]
    usable.sort(key=lambda x: x.tls != "starttls")
    return usable[0] if usable else None


def bootstrap(store: Store, cfg: Config, echo: Callable[[str], None] = print,
              dkim_bits: int = 2048) -> DevTenant | None:
    """Create the dev tenant when ``dev_bootstrap`` is on and there are no accounts."""
    if not cfg.server.dev_bootstrap or store.accounts.list():
        return None
    acc = store.accounts.create(DEV_NAME)
    domain = dev_domain(cfg.server.hostname)
    private_pem, public_b64 = keys.generate_dkim_key(dkim_bits)
    dom = store.domains.add(acc.id, domain, keys.new_verify_token(), keys.new_selector(),
                            private_pem, public_b64)
    store.domains.set_verified(dom.id)
    ch = store.channels.create(acc.id, DEV_NAME)
    cred, secret = store.credentials.create(acc.id, ch.id, "dev bootstrap")
    sender = f"{DEV_NAME}@{domain}"
    tenant = DevTenant(acc, store.domains.require(dom.id), ch, cred.username, secret, sender,
                       swaks_command(cfg, cred.username, secret, sender))
    for line in _announcement(tenant):
        echo(line)
    return tenant


def _announcement(t: DevTenant) -> list[str]:
    return [
        "dev_bootstrap: created account 'dev', channel 'dev' and a credential.",
        f"dev_bootstrap: marked domain {t.domain.name} VERIFIED WITHOUT DNS "
        "(development only; real domains need 'helo-smtp domains verify').",
        f"  username: {t.username}",
        f"  secret:   {t.secret}   (shown once; not stored)",
        f"  sender:   {t.sender}",
        "Send a first message:",
        f"  {t.swaks}",
    ]
