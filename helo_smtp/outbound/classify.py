"""Bounce classification: every failed reply gets a ``BounceCategory``.

The rules are data, checked in order, first match wins:

0. ``AUTHORITATIVE``: the few enhanced statuses precise enough to trust over any text (5.7.26
   "unauthenticated" often ends with "to protect our users from spam", yet it is a policy
   failure the sender can fix, not a spam verdict).
1. ``TEXT_RULES``: provider phrasing. Receivers put their real reason in the text (Gmail's
   "does not exist", Microsoft's "RecipientNotFound" under a 5.1.10, Yahoo's "[TSS04]"), and
   the enhanced status is often generic (5.7.1 covers spam, reputation and policy), so the text
   is read first. A rule may be limited to some enhanced-status classes (``only``) or barred
   from some (``never``): "mailbox unavailable" is RFC 5321's stock 550 text and means an unknown
   user only when the status does not say "security or policy" (5.7.x).
2. ``STATUS_RULES``: the RFC 3463 enhanced status (subject.detail, then subject alone).
3. ``CODE_RULES``: the basic reply code when nothing else spoke.

Only ``invalid_recipient`` and ``domain_not_found`` are recipient-class hard bounces; the store
suppresses the address on the channel for those categories alone, so a rule that puts a
reputation or policy reply into them would suppress good addresses: keep those patterns
narrow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from helo_smtp.models import BounceCategory as C


@dataclass(frozen=True, slots=True)
class TextRule:
    category: C
    pattern: re.Pattern[str]
    only: tuple[str, ...] = ()  # enhanced-status prefixes the rule is limited to
    never: tuple[str, ...] = ()  # enhanced-status prefixes that disable the rule

    def matches(self, status: str | None, text: str) -> bool:
        subject = status.split(".", 1)[1] if status else ""
        if self.only and not any(subject.startswith(p) for p in self.only):
            return False
        if self.never and any(subject.startswith(p) for p in self.never):
            return False
        return bool(self.pattern.search(text))


def _re(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(alternatives), re.IGNORECASE)


#: Enhanced statuses (without the class digit) that decide the category whatever the text.
AUTHORITATIVE: dict[str, C] = {
    "7.23": C.POLICY, "7.24": C.POLICY, "7.25": C.POLICY, "7.26": C.POLICY,
    "7.27": C.POLICY, "7.28": C.RATE_LIMITED, "2.2": C.MAILBOX_FULL,
}

TEXT_RULES: tuple[TextRule, ...] = (
    TextRule(C.MAILBOX_FULL, _re(
        r"over ?quota", r"out of storage", r"mailbox (is )?full", r"quota ?exceeded",
        r"exceeded (its|the|his|her) (storage|quota)", r"insufficient storage for user",
        r"mailbox size limit", r"QuotaExceeded")),
    TextRule(C.INVALID_RECIPIENT, _re(
        r"does ?n[o']t exist", r"no such (user|mailbox|recipient|address)",
        r"user (unknown|not found|doesn't exist)", r"unknown (user|recipient|mailbox)",
        r"recipient ?not ?found", r"RecipientNotFound", r"mailbox (not found|does not exist)",
        r"invalid (recipient|mailbox|address)", r"account (is|has been) disabled",
        r"mailbox is disabled", r"account that you tried to reach is disabled",
        r"doesn't have an? \S+ account", r"address rejected: access denied",
        r"not a valid (recipient|mailbox|user)", r"no mailbox here",
        r"recipient address rejected: user unknown", r"unrouteable address")),
    TextRule(C.RATE_LIMITED, _re(
        r"rate limit", r"unusual rate", r"at a rate that", r"too many (messages|connections"
        r"|recipients|emails)", r"server busy", r"throttl", r"sending limit",
        r"exceeded the (hourly|daily|maximum)", r"too fast")),
    TextRule(C.REPUTATION, _re(
        r"reputation", r"block ?list", r"black ?list", r"spamhaus", r"spamcop", r"barracuda",
        r"dnsbl", r"\bRBL\b", r"banned send", r"blocked using", r"listed (at|on|in|by)",
        r"complaints", r"\[TSS0\d\]", r"\[TS0\d\]", r"traffic not accepted from this ip",
        r"proofpoint\.com/dnsbl", r"ipcheck\.proofpoint", r"poor sending history")),
    TextRule(C.SPAM_BLOCK, _re(
        r"\bspam\b", r"unsolicited", r"junk mail", r"bulk mail", r"spam ?(like|content)")),
    TextRule(C.CONTENT, _re(
        r"virus", r"malware", r"content (presents|rejected|filter)", r"attachment",
        r"message size", r"size limit", r"too (big|large)", r"security issue",
        r"message (was )?blocked because its content")),
    TextRule(C.POLICY, _re(
        r"policy", r"unauthenticated", r"authenticat", r"\bSPF\b", r"\bDKIM\b",
        r"\bDMARC\b", r"relay(ing)? (access )?(denied|not permitted)", r"PTR record",
        r"reverse (dns|lookup)", r"not authorized", r"not permitted")),
    TextRule(C.INVALID_RECIPIENT, _re(
        r"mailbox (unavailable|not available)", r"address rejected", r"no such"),
        never=("7.",)),
)

#: Enhanced status (without its class) -> category: "subject.detail" first, then "subject.".
STATUS_RULES: dict[str, C] = {
    "1.1": C.INVALID_RECIPIENT, "1.0": C.INVALID_RECIPIENT, "1.3": C.INVALID_RECIPIENT,
    "1.6": C.INVALID_RECIPIENT, "1.2": C.DOMAIN_NOT_FOUND, "1.10": C.DOMAIN_NOT_FOUND,
    "1.7": C.POLICY, "1.8": C.POLICY,
    "2.2": C.MAILBOX_FULL, "2.3": C.CONTENT,
    "3.4": C.CONTENT,
    "4.4": C.DOMAIN_NOT_FOUND, "4.3": C.DNS, "4.7": C.OTHER,
    "7.28": C.RATE_LIMITED, "7.7": C.CONTENT,
    "1.": C.INVALID_RECIPIENT, "2.": C.OTHER, "3.": C.OTHER, "4.": C.CONNECTION,
    "5.": C.OTHER, "6.": C.CONTENT, "7.": C.POLICY,
}

#: Enhanced statuses whose meaning depends on the class: 5.2.1 is a disabled mailbox (hard),
#: 4.2.1 is "receiving too fast" (Gmail's temporary rate limit).
CLASS_STATUS_RULES: dict[str, C] = {"5.2.1": C.INVALID_RECIPIENT, "4.2.1": C.RATE_LIMITED,
                                    "4.4.4": C.CONNECTION}

CODE_RULES: dict[int, C] = {421: C.CONNECTION, 452: C.OTHER, 552: C.MAILBOX_FULL,
                            554: C.OTHER}


def classify(code: int | None, status: str | None, text: str) -> C:
    """The category of a failed reply (see the module text for the order of the rules)."""
    if status and status.split(".", 1)[1] in AUTHORITATIVE:
        return AUTHORITATIVE[status.split(".", 1)[1]]
    for rule in TEXT_RULES:
        if rule.matches(status, text):
            return rule.category
    if status:
        if status in CLASS_STATUS_RULES:
            return CLASS_STATUS_RULES[status]
        subject_detail = status.split(".", 1)[1]
        if subject_detail in STATUS_RULES:
            return STATUS_RULES[subject_detail]
        subject = subject_detail.split(".", 1)[0] + "."
        if subject in STATUS_RULES:
            return STATUS_RULES[subject]
    if code is not None and code in CODE_RULES:
        return CODE_RULES[code]
    return C.OTHER
