"""One product: every Helo rule walked through both doors, SMTP and HTTP, answers with the
same ``errorCode`` from ``errors.py`` (the rule exists once, in ``helo_smtp/submit``)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from helo_smtp.models import AccountStatus


@dataclass
class Rule:
    code: str
    setup: Callable[[Any], None] = lambda a: None
    rcpts: list[str] = field(default_factory=lambda: ["ann@example.test"])
    sender: str | None = None
    smtp: dict[str, Any] = field(default_factory=dict)  # tests.support.submit.build kwargs
    api: dict[str, Any] = field(default_factory=dict)  # JSON fields
    api_headers: dict[str, str] = field(default_factory=dict)


def _status(status: AccountStatus) -> Callable[[Any], None]:
    return lambda a: a.store.accounts.set_status(a.relay.tenant.account.id, status)


def _suppress(a: Any) -> None:
    a.store.suppressions.add(a.relay.tenant.channel.id, ["ann@example.test"])


OTHER_CHANNEL = str(uuid.uuid4())
BIG = "x" * 900

RULES = {
    "accepted": Rule("accepted"),
    "account_forbidden": Rule("account_forbidden", _status(AccountStatus.FORBIDDEN)),
    "domain_unverified": Rule("domain_unverified", sender="app@unverified.test"),
    "channel_not_found": Rule(
        "channel_not_found", smtp={"headers": {"X-Helo-Channel-Id": OTHER_CHANNEL}},
        api_headers={"X-Helo-Channel-Id": OTHER_CHANNEL}),
    "recipient_forbidden": Rule("recipient_forbidden", _status(AccountStatus.PENDING)),
    "recipients_suppressed": Rule("recipients_suppressed", _suppress),
    "templating_error": Rule(
        "templating_error", smtp={"subject": "Hi {{name}}",
                                  "headers": {"X-Helo-Template-Data": "{}"}},
        api={"subject": None, "text": None,
             "template": {"subject": "Hi {{name}}", "text": "x", "data": {}}}),
    "validation_error_tags": Rule(
        "validation_error", smtp={"headers": {"X-Helo-Tag": "a,b,c,d,e,f"}},
        api={"tags": list("abcdef")}),
    "validation_error_subject": Rule(
        "validation_error", smtp={"subject": "s" * 257}, api={"subject": "s" * 257}),
    "validation_error_metadata": Rule(
        "validation_error",
        smtp={"headers": {f"X-Helo-Metadata-k{i}": "v" for i in range(11)}},
        api={"metadata": {f"k{i}": "v" for i in range(11)}}),
    "validation_error_custom_headers": Rule(
        "validation_error", smtp={"headers": {f"X-Big-{i}": BIG for i in range(6)}},
        api={"headers": {f"X-Big-{i}": BIG for i in range(6)}}),
}


@pytest.mark.parametrize("name", sorted(RULES))
def test_both_doors_answer_a_rule_with_the_same_error_code(api, name):
    rule = RULES[name]
    a = api()
    rule.setup(a)
    smtp = a.smtp_code(rule.rcpts, sender=rule.sender, **rule.smtp)
    body = a.message(rule.rcpts, **rule.api)
    if rule.sender:
        body["from"] = rule.sender
    body = {k: v for k, v in body.items() if v is not None}
    status, answer = a.send(body, headers=rule.api_headers)
    assert smtp == rule.code
    assert answer.get("errorCode", answer["status"]) == rule.code, answer
    expected = {"accepted": 200, "channel_not_found": 404, "validation_error": 400}
    assert status == expected.get(rule.code, 422)
