"""Helo's rules as pure functions (helo_smtp.inbound.policy)."""

from __future__ import annotations

import datetime as dt

import pytest

from helo_smtp import errors
from helo_smtp.inbound import policy
from helo_smtp.models import (
    Account,
    AccountStatus,
    Channel,
    ChannelRef,
    ListenerMailType,
    MailType,
)

ACC = Account("acc", "acme", AccountStatus.ACTIVE, 0, 0.0)
PENDING = Account("acc", "acme", AccountStatus.PENDING, 0, 0.0)
CH = Channel("ch-1", "acc", "main", True, False, 0.0)
SCOPED = ChannelRef("cred", "user", "acc", "ch-1")
ACCOUNT_WIDE = ChannelRef("cred", "user", "acc", None)


def test_capacity():
    policy.check_capacity(None, 64, 0, 10)
    policy.check_capacity(65 * 2**20, 64, 10, 10)
    policy.check_capacity(0, 0, 0, 10)  # margin 0: disk guard off
    with pytest.raises(errors.InsufficientStorage):
        policy.check_capacity(63 * 2**20, 64, 0, 10)
    with pytest.raises(errors.QueueFull):
        policy.check_capacity(None, 64, 11, 10)


def test_account():
    assert policy.check_account(ACC) is ACC
    assert policy.check_account(PENDING) is PENDING
    for bad in (None, Account("a", "x", AccountStatus.FORBIDDEN, 0, 0.0)):
        with pytest.raises(errors.AccountForbidden):
            policy.check_account(bad)
    with pytest.raises(errors.DomainUnverified):
        policy.check_sender_domain(False)


def test_recipients():
    policy.check_recipient_count(49, 50)
    with pytest.raises(errors.TooManyRecipients):
        policy.check_recipient_count(50, 50)
    policy.check_pending_recipient(ACC, "a.test", "b.test", 0)
    policy.check_pending_recipient(PENDING, "a.test", "a.test", 0)
    with pytest.raises(errors.RecipientForbidden):
        policy.check_pending_recipient(PENDING, "a.test", "b.test", 0)
    near = Account("acc", "acme", AccountStatus.PENDING, 998, 0.0)
    policy.check_pending_recipient(near, "a.test", "a.test", 1)  # send number 1,000
    with pytest.raises(errors.SendLimitExceeded):
        policy.check_pending_recipient(near, "a.test", "a.test", 2)


def test_channel_selection():
    assert policy.channel_to_use(SCOPED, None) == "ch-1"
    assert policy.channel_to_use(SCOPED, "CH-1") == "ch-1"
    assert policy.channel_to_use(ACCOUNT_WIDE, "CH-2") == "ch-2"
    for ref, header in ((SCOPED, "ch-2"), (ACCOUNT_WIDE, None)):
        with pytest.raises(errors.ChannelNotFound):
            policy.channel_to_use(ref, header)
    assert policy.check_channel(SCOPED, CH) is CH
    for channel in (None, Channel("ch-1", "other", "main", False, False, 0.0)):
        with pytest.raises(errors.ChannelNotFound):
            policy.check_channel(SCOPED, channel)


def test_mail_type():
    H, B, T = ListenerMailType.HEADER, ListenerMailType.BROADCAST, ListenerMailType.TRANSACTIONAL
    assert policy.mail_type(H, None) == MailType.TRANSACTIONAL
    assert policy.mail_type(H, MailType.BROADCAST) == MailType.BROADCAST
    assert policy.mail_type(B, None) == MailType.BROADCAST
    assert policy.mail_type(B, MailType.BROADCAST) == MailType.BROADCAST
    with pytest.raises(errors.MailTypeConflict):
        policy.mail_type(B, MailType.TRANSACTIONAL)
    with pytest.raises(errors.MailTypeConflict):
        policy.mail_type(T, MailType.BROADCAST)


def test_tracking_and_broadcast_group():
    assert policy.tracking(CH, None, None) == (True, False)
    assert policy.tracking(CH, False, True) == (False, True)
    assert policy.broadcast_group("spring", "Sale", 0) == ("name:spring", "spring")
    noon = dt.datetime(2025, 3, 1, 23, 59, tzinfo=dt.UTC).timestamp()
    key, name = policy.broadcast_group(None, "Sale", noon)
    assert key == "subject:2025-03-01:Sale" and name == "Sale (2025-03-01)"
    assert policy.broadcast_group(None, "", noon)[1] == "(no subject) (2025-03-01)"
