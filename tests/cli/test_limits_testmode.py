"""``channels update --hourly-limit/--daily-limit`` and ``credentials create --test``."""

from __future__ import annotations

from tests.cli.conftest import CLI


def _channel(cli: CLI) -> dict:
    cli.json("accounts", "create", "acme")
    return cli.json("channels", "create", "--account", "acme", "--name", "news")


def test_channels_update_sets_and_clears_send_limits(cli: CLI, db_store):
    ch = _channel(cli)
    assert (ch["hourly_limit"], ch["daily_limit"], ch["sent_this_hour"]) == (None, None, 0)
    out = cli.json("channels", "update", "acme/news", "--hourly-limit", "500",
                   "--daily-limit", "5000")
    assert (out["hourly_limit"], out["daily_limit"]) == (500, 5000)
    assert [(u.period, u.limit) for u in db_store.limits.usage(ch["id"])] == [
        ("hour", 500), ("day", 5000)]
    out = cli.json("channels", "update", "acme/news", "--daily-limit", "0")
    assert (out["hourly_limit"], out["daily_limit"]) == (500, None)
    shown = cli.json("channels", "show", "acme/news")
    assert (shown["hourly_limit"], shown["sent_this_day"]) == (500, 0)
    assert "Error:" in cli.fail("channels", "update", "acme/news", "--hourly-limit", "-1")


def test_credentials_create_test_flag(cli: CLI):
    _channel(cli)
    live = cli.json("credentials", "create", "--channel", "acme/news")
    test = cli.json("credentials", "create", "--channel", "acme/news", "--name", "ci", "--test")
    assert (live["test"], test["test"]) == (False, True)
    listed = {c["username"]: c["test"] for c in cli.json("credentials", "list")}
    assert listed == {live["username"]: False, test["username"]: True}
    assert "test" in cli.ok("credentials", "list").stdout.splitlines()[0].split()
