"""``helo-smtp accounts`` and ``helo-smtp domains``."""

from __future__ import annotations

from typing import Any

import click

from helo_smtp import domainverify, keys
from helo_smtp.bounces.dnsrecords import bounce_records
from helo_smtp.cli.common import (
    app,
    asdict,
    check_domain,
    common,
    emit,
    emit_record,
    emit_table,
    find_account,
    find_domain,
    note,
    record,
    table,
)
from helo_smtp.errors import UsageError
from helo_smtp.models import AccountStatus, Domain

ACCOUNT_COLUMNS = ["id", "name", "status", "sends_used", "created_at"]
DOMAIN_COLUMNS = ["id", "name", "account", "verified", "dkim_selector", "created_at"]
BITS = click.Choice(["1024", "2048", "3072", "4096"])
BITS_HELP = "DKIM RSA key size (RFC 8301: at least 1024; 2048 recommended)."


@click.group(short_help="Accounts: create, list, show, set-status.")
def accounts() -> None:
    """Accounts: who sends. Status active, pending (own domain only, 1,000 sends) or
    forbidden.

    \b
    Example:
      helo-smtp accounts create acme
    """


@accounts.command("create")
@click.argument("name")
@click.option("--pending", is_flag=True, help="Create with status pending (free tier rules).")
@common
def accounts_create(name: str, pending: bool) -> None:
    """Create an account named NAME (unique).

    \b
    Example:
      helo-smtp accounts create acme --pending
    """
    status = AccountStatus.PENDING if pending else AccountStatus.ACTIVE
    acc = app().store.accounts.create(name, status)
    emit_record(asdict(acc))


@accounts.command("list")
@common
def accounts_list() -> None:
    """List accounts.

    \b
    Example:
      helo-smtp accounts list --json
    """
    emit_table([asdict(a) for a in app().store.accounts.list()], ACCOUNT_COLUMNS,
               empty="(no accounts)")


@accounts.command("show")
@click.argument("account", metavar="ID|NAME")
@common
def accounts_show(account: str) -> None:
    """Show an account with its domains, channels and credentials.

    \b
    Example:
      helo-smtp accounts show acme
    """
    store = app().store
    acc = find_account(store, account)
    data = asdict(acc)
    data["domains"] = [{"name": d.name, "verified": d.verified}
                       for d in store.domains.list(acc.id)]
    data["channels"] = [{"id": c.id, "name": c.name} for c in store.channels.list(acc.id)]
    data["credentials"] = len(store.credentials.list(acc.id))
    emit(data, _print_account)


def _print_account(d: dict[str, Any]) -> None:
    record(d, [*ACCOUNT_COLUMNS, "credentials"])
    click.echo("domains:")
    table(d["domains"], ["name", "verified"])
    click.echo("channels:")
    table(d["channels"], ["id", "name"])


@accounts.command("set-status")
@click.argument("account", metavar="ID|NAME")
@click.argument("status", type=click.Choice([s.value for s in AccountStatus]))
@common
def accounts_set_status(account: str, status: str) -> None:
    """Set an account's status: active, pending or forbidden.

    \b
    Example:
      helo-smtp accounts set-status acme forbidden
    """
    store = app().store
    acc = store.accounts.set_status(find_account(store, account).id, AccountStatus(status))
    emit_record(asdict(acc))


# ---- domains ------------------------------------------------------------------------------
@click.group(short_help="Sending domains: DNS proof and DKIM keys.")
def domains() -> None:
    """Sending domains: DNS verification and DKIM keys.

    \b
    Example:
      helo-smtp domains add example.com --account acme
    """


def _records(dom: Domain) -> list[dict[str, str]]:
    return [{"name": n, "type": t, "value": v} for n, t, v in
            keys.dns_records(dom.name, dom.verify_token, dom.dkim_selector,
                             dom.dkim_public_key)]


def zone_line(rec: dict[str, str]) -> str:
    """The record in zone-file form; TXT values over 255 octets split into strings (RFC 1035
    §3.3.14), the form DNS consoles accept for long DKIM keys."""
    v = rec["value"]
    if rec["type"] != "TXT":
        return f"{rec['name']}. IN {rec['type']} {v}"
    chunks = " ".join(f'"{v[i:i + 255]}"' for i in range(0, len(v), 255))
    return f"{rec['name']}. IN {rec['type']} {chunks}"


def _domain_data(dom: Domain, account_name: str) -> dict[str, Any]:
    return {"id": dom.id, "name": dom.name, "account_id": dom.account_id,
            "account": account_name, "verified": dom.verified, "verified_at": dom.verified_at,
            "dkim_selector": dom.dkim_selector, "created_at": dom.created_at,
            "records": _records(dom)}


def _print_domain(d: dict[str, Any]) -> None:
    record(d, [k for k in d if k not in ("records", "bounce_records")])
    click.echo("DNS records to publish:")
    for rec in d["records"]:
        click.echo(f"  {zone_line(rec)}")
    if d.get("bounce_records"):
        click.echo("bounce domain records (once per relay, [bounces] domain):")
        for rec in d["bounce_records"]:
            click.echo(f"  {zone_line(rec)}")


@domains.command("add")
@click.argument("domain")
@click.option("--account", required=True, metavar="ID|NAME", help="Owning account.")
@click.option("--bits", type=BITS, default="2048", show_default=True, help=BITS_HELP)
@common
def domains_add(domain: str, account: str, bits: str) -> None:
    """Add DOMAIN to an account: generates its DKIM key and verification token and prints
    the TXT records to publish (then run 'domains verify').

    \b
    Example:
      helo-smtp domains add example.com --account acme
    """
    store = app().store
    name = check_domain(domain)
    acc = find_account(store, account)
    if store.domains.get(name) is not None:
        raise UsageError(f"domain '{name}' already exists")
    private_pem, public_b64 = keys.generate_dkim_key(int(bits))
    dom = store.domains.add(acc.id, name, keys.new_verify_token(), keys.new_selector(),
                            private_pem, public_b64)
    emit(_domain_data(dom, acc.name), _print_domain)


@domains.command("list")
@click.option("--account", metavar="ID|NAME", help="Only this account's domains.")
@common
def domains_list(account: str | None) -> None:
    """List domains.

    \b
    Example:
      helo-smtp domains list --account acme
    """
    store = app().store
    acc_id = find_account(store, account).id if account else None
    names = {a.id: a.name for a in store.accounts.list()}
    rows = [{k: v for k, v in _domain_data(d, names.get(d.account_id, "")).items()
             if k != "records"} for d in store.domains.list(acc_id)]
    emit_table(rows, DOMAIN_COLUMNS, empty="(no domains)")


@domains.command("show")
@click.argument("domain", metavar="DOMAIN")
@common
def domains_show(domain: str) -> None:
    """Show a domain, its verification state and the DNS records to publish.

    \b
    Example:
      helo-smtp domains show example.com
    """
    store = app().store
    dom = find_domain(store, domain)
    data = _domain_data(dom, store.accounts.require(dom.account_id).name)
    data["bounce_records"] = bounce_records(app().cfg)  # the relay's [bounces] domain
    emit(data, _print_domain)


@domains.command("verify")
@click.argument("domain", metavar="DOMAIN")
@common
def domains_verify(domain: str) -> None:
    """Look up the _helo TXT record through the configured resolver ([dns]) and mark the
    domain verified when it holds the token. Exits 1 when it does not.

    \b
    Example:
      helo-smtp domains verify example.com
    """
    a = app()
    dom = find_domain(a.store, domain)
    verdict = domainverify.check(dom.name, dom.verify_token, a.cfg.dns)
    if verdict.ok:
        a.store.domains.set_verified(dom.id)
    data = {"domain": dom.name, "verified": verdict.ok or dom.verified,
            "outcome": verdict.outcome.value, "record": verdict.name,
            "message": verdict.message, "found": verdict.found}
    if verdict.ok:
        emit(data, lambda d: click.echo(f"{d['domain']}: verified ({d['message']})"))
        return
    if a.json:
        emit(data, lambda d: None)
    kept = " (it stays verified from its earlier check)" if dom.verified else ""
    dev = ("; dev mode verifies no domain without DNS: send from the dev domain, or point "
           "[dns] nameservers at a resolver that serves the _helo record"
           if a.cfg.dev.inbox else "")
    raise UsageError(f"{dom.name} not verified: {verdict.message}{kept}{dev}")


@domains.command("dkim-rotate")
@click.argument("domain", metavar="DOMAIN")
@click.option("--bits", type=BITS, default="2048", show_default=True, help=BITS_HELP)
@common
def domains_dkim_rotate(domain: str, bits: str) -> None:
    """Give DOMAIN a new DKIM selector and key, and print the record to publish.

    Mail is signed with the new key from now on: publish the new record right away, and keep
    the old selector's record for a few days for mail still in transit.

    \b
    Example:
      helo-smtp domains dkim-rotate example.com
    """
    store = app().store
    dom = find_domain(store, domain)
    selector = keys.new_selector()
    while selector == dom.dkim_selector:
        selector = keys.new_selector()
    private_pem, public_b64 = keys.generate_dkim_key(int(bits))
    store.domains.rotate_dkim(dom.id, selector, private_pem, public_b64)
    new = store.domains.require(dom.id)
    rec = _records(new)[1]
    data = {"domain": new.name, "old_selector": dom.dkim_selector, "dkim_selector": selector,
            "record": rec}
    note(f"old selector {dom.dkim_selector}: keep its record until mail in transit is "
         "delivered")
    emit(data, lambda d: click.echo(f"{d['domain']}: new DKIM selector {d['dkim_selector']}; "
                                    f"publish:\n  {zone_line(d['record'])}"))
