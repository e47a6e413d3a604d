"""DATA content as pure functions: control headers, limits, templates, header surgery."""

from __future__ import annotations

import email
import email.policy

import pytest

from helo_smtp import errors
from helo_smtp.inbound import controls, headers, message, templates
from helo_smtp.inbound.controls import DETAILS


def raw(*header_lines: str, body: str = "body\r\n") -> bytes:
    return ("\r\n".join(("From: App <app@sender.test>", *header_lines)) + "\r\n\r\n"
            + body).encode()


def detail_of(exc_info) -> str:
    return exc_info.value.line()


# ---- controls -------------------------------------------------------------------------------
def test_controls_read_all_aliases():
    c = controls.read([
        ("X-Helo-Channel-Id", "0193A0B0-0000-7000-8000-000000000001"),
        ("x-helo-mail-type", "Broadcast"), ("X-Helo-Idempotency-Key", " k1 "),
        ("X-Helo-Tag", "a, b,,a"), ("X-PM-Tag", "c"),
        ("X-Helo-Metadata-Order-Id", "7"), ("X-PM-Metadata-user", "u"),
        ("X-PM-TrackOpens", "false"), ("X-PM-TrackLinks", "HtmlAndText"),
        ("X-Helo-Template-Data", '{"a": 1}'), ("X-Helo-Broadcast", "spring"),
        ("X-Helo-Future", "ignored"), ("Subject", "not a control header"),
    ])
    assert c.channel_id == "0193a0b0-0000-7000-8000-000000000001"
    assert c.mail_type == "broadcast" and c.idempotency_key == "k1"
    assert c.tags == ["a", "b", "c"]
    assert c.metadata == {"Order-Id": "7", "user": "u"}
    assert (c.track_opens, c.track_links) == (False, True)
    assert c.template_data == {"a": 1} and c.broadcast == "spring"
    assert controls.read([("X-PM-TrackLinks", "None")]).track_links is False
    assert controls.read([("X-Helo-Track-Links", "true")]).track_links is True


@pytest.mark.parametrize("items,key", [
    ([("X-Helo-Channel-Id", "abc")], "channel"),
    ([("X-Helo-Mail-Type", "bulk")], "mail_type"),
    ([("X-Helo-Idempotency-Key", "")], "idempotency"),
    ([("X-Helo-Idempotency-Key", "k" * 37)], "idempotency"),
    ([("X-Helo-Tag", "1,2,3"), ("X-Helo-Tag", "4,5,6")], "tags"),
    ([("X-Helo-Tag", "t" * 101)], "tag"),
    ([(f"X-Helo-Metadata-k{i}", "v") for i in range(11)], "fields"),
    ([("X-Helo-Metadata-", "v")], "key"),
    ([("X-Helo-Metadata-" + "k" * 51, "v")], "key"),
    ([("X-Helo-Metadata-k", "v" * 101)], "value"),
    ([("X-Helo-Track-Opens", "yes")], "boolean"),
    ([("X-Helo-Broadcast", "")], "broadcast"),
    ([("X-Helo-Broadcast", "b" * 101)], "broadcast"),
    ([("X-Helo-Channel-Id", "0193a0b0-0000-7000-8000-000000000001")] * 2, "duplicate"),
])
def test_control_limits(items, key):
    with pytest.raises(errors.ValidationError) as exc:
        controls.read(items)
    assert detail_of(exc) == errors.CATALOG["validation_error"].line(DETAILS[key])


@pytest.mark.parametrize("value", ["not json", "[1]", "1" * 10 + "[" * 100_000])
def test_template_data_must_be_a_json_object(value):
    with pytest.raises(errors.TemplatingError):
        controls.read([("X-Helo-Template-Data", value)])


def test_custom_header_total():
    fields = [("x-a", b"X-A: " + b"v" * 2495), ("x-b", b"X-B: " + b"v" * 2495),
              ("subject", b"Subject: " + b"s" * 9000),
              ("x-helo-tag", b"X-Helo-Tag: " + b"t" * 9000),
              ("received", b"Received: " + b"r" * 9000)]
    controls.check_custom(fields)  # exactly 5,000 custom characters
    with pytest.raises(errors.ValidationError):
        controls.check_custom([*fields, ("x-c", b"X")])
    folded = [("x-a", b"X-A: " + b"v" * 2000 + b"\r\n " + b"v" * 2995)]
    with pytest.raises(errors.ValidationError):
        controls.check_custom(folded)  # 5,001 once unfolded


# ---- templates ------------------------------------------------------------------------------
@pytest.mark.parametrize("text,html,expected", [
    ("Hi {{name}}!", False, "Hi Jane & co!"),
    ("Hi {{ name }}!", True, "Hi Jane &amp; co!"),
    ("Hi {{{name}}}!", True, "Hi Jane & co!"),
    ("#{{order.id}} {{order.paid}} [{{order.note}}]", False, "#7 true []"),
    ("no placeholders", False, "no placeholders"),
])
def test_render(text, html, expected):
    data = {"name": "Jane & co", "order": {"id": 7, "paid": True, "note": None}}
    assert templates.render(text, data, html_part=html) == expected


@pytest.mark.parametrize("text", [
    "{{missing}}", "{{order.missing}}", "{{name", "name}}", "{{}}", "{{ two words }}",
    "{{order}}", "{{list}}", "{{{name}}", "{{name}}}", "{ {name}} {{",
])
def test_render_errors(text):
    with pytest.raises(errors.TemplatingError):
        templates.render(text, {"name": "x", "order": {"id": 1}, "list": [1]})


# ---- header surgery -------------------------------------------------------------------------
def test_normalise_and_split():
    data = headers.normalise_line_ends(b"A: 1\nB: 2\r\n folded\rC: 3\r\n\nbody\rmore\n")
    assert data == b"A: 1\r\nB: 2\r\n folded\r\nC: 3\r\n\r\nbody\r\nmore\r\n"
    fields, rest = headers.split(data)
    assert [(f.name, f.raw) for f in fields] == [
        ("a", b"A: 1\r\n"), ("b", b"B: 2\r\n folded\r\n"), ("c", b"C: 3\r\n")]
    assert rest == b"\r\nbody\r\nmore\r\n"
    assert headers.join(fields, rest) == data
    no_sep, rest = headers.split(b"A: 1\r\nnot a header line\r\n")
    assert [f.name for f in no_sep] == ["a"] and rest == b"not a header line\r\n"
    assert headers.join(no_sep, rest) == b"A: 1\r\n\r\nnot a header line\r\n"


def test_finalize_strips_controls_and_adds_trace_and_id():
    data = raw("X-Helo-Tag: a", "x-pm-metadata-k: v", "Subject: s", "X-Other: kept")
    out = message.finalize(data, "from h ([127.0.0.1])\r\n\tby relay.test; date", "mid",
                           "relay.test", 86400.0)
    assert out == (b"Received: from h ([127.0.0.1])\r\n\tby relay.test; date\r\n"
                   b"From: App <app@sender.test>\r\nSubject: s\r\nX-Other: kept\r\n"
                   b"Message-ID: <mid@relay.test>\r\nDate: Fri, 02 Jan 1970 00:00:00 +0000\r\n"
                   b"\r\nbody\r\n")
    kept = message.finalize(raw("Message-Id: <own@x>", "date: Mon, 1 Dec 2025 10:00:00 +0100"),
                            "r", "mid", "relay.test", 0.0)
    assert kept.count(b"Message-I") == 1 and b"<own@x>" in kept
    assert kept.lower().count(b"date:") == 1 and b"date: Mon, 1 Dec 2025" in kept


def test_received_is_built_from_validated_and_own_text_only():
    t = message.Trace("client.test", "192.0.2.7", "relay.test", True, "TLSv1.3",
                      "TLS_AES_128_GCM_SHA256\r\nInjected: x")
    value = message.received(t, "mid", 0.0)
    assert value == ("from client.test ([192.0.2.7])\r\n\tby relay.test (helo-smtp) with "
                     "UTF8SMTPSA id mid\r\n\t(using TLSv1.3 with cipher "
                     "TLS_AES_128_GCM_SHA256Injectedx);\r\n\tThu, 01 Jan 1970 00:00:00 +0000")
    v6 = message.received(message.Trace("[IPv6:::1]", "::1", "r.test", False, None, None),
                          "mid", 0.0)
    assert v6.startswith("from [IPv6:::1] ([IPv6:::1])\r\n\tby r.test (helo-smtp) with ESMTPSA")


# ---- read / fill ----------------------------------------------------------------------------
def test_read():
    inc = message.read(raw("Subject: =?utf-8?q?caf=C3=A9?=", "X-Helo-Tag: t",
                           "From: second@other.test"))
    assert inc.subject == "café" and inc.controls.tags == ["t"]
    assert inc.from_domains == ["sender.test", "other.test"]
    with pytest.raises(errors.NulCharacters):
        message.read(raw(body="a\x00b"))
    with pytest.raises(errors.ValidationError) as exc:
        message.read(b"Subject: none\r\n\r\nbody")
    assert detail_of(exc).endswith(DETAILS["from"])
    with pytest.raises(errors.ValidationError) as exc:
        message.read(raw("Subject: " + "s" * 257))
    assert detail_of(exc).endswith(DETAILS["subject"])


def test_fill_templates():
    body = ("--b\r\nContent-Type: text/plain\r\n\r\nHi {{n}}\r\n"
            "--b\r\nContent-Type: text/html\r\n\r\n<b>{{n}}</b>\r\n"
            "--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\n{{n}}\r\n"
            "--b--\r\n")
    data = raw("Subject: For {{n}}", 'X-Helo-Template-Data: {"n": "<Al>"}', "MIME-Version: 1.0",
               'Content-Type: multipart/mixed; boundary="b"', body=body)
    out, subject = message.fill_templates(message.read(data))
    assert subject == "For <Al>"
    parsed = email.message_from_bytes(out, policy=email.policy.default)
    parts = [p.get_content().strip() for p in parsed.iter_parts()]
    assert parts == ["Hi <Al>", "<b>&lt;Al&gt;</b>", "{{n}}"]  # attachments untouched
    assert parsed["Subject"] == "For <Al>"
    plain = raw("Subject: {{x}}")
    assert message.fill_templates(message.read(plain)) == (plain, "{{x}}")
    with pytest.raises(errors.TemplatingError):
        message.fill_templates(message.read(raw("Subject: {{x}}", "X-Helo-Template-Data: {}")))
    with pytest.raises(errors.TemplatingError):  # a value may not add header lines
        message.fill_templates(message.read(raw(
            "Subject: {{x}}", 'X-Helo-Template-Data: {"x": "a\\r\\nBcc: evil@x.test"}')))
