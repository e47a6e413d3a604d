"""Helo's rules as pure functions: each takes plain values and returns or raises a ``HeloError``.

The handler gathers the values (from the session, the envelope and the directory) and calls
these in SMTP order; keeping them free of I/O makes every rule testable on its own
(tests/unit/test_policy.py).
"""

from __future__ import annotations

import datetime as dt

from helo_smtp.errors import (
    AccountForbidden,
    ChannelNotFound,
    DomainUnverified,
    InsufficientStorage,
    MailTypeConflict,
    QueueFull,
    RecipientForbidden,
    SendLimitExceeded,
    TooManyRecipients,
)
from helo_smtp.models import (
    Account,
    AccountStatus,
    Channel,
    ChannelRef,
    ListenerMailType,
    MailType,
)

PENDING_SEND_LIMIT = 1000  # Helo's free-send limit for pending accounts (recipient-sends)


def check_capacity(free_bytes: int | None, margin_mb: int, pending: int,
                   high_water: int) -> None:
    """MAIL-time guards: free disk space under the margin, queue over its high-water mark.

    ``free_bytes`` None means unknown (not a local file): the disk guard is skipped.
    A margin of 0 disables the disk guard.
    """
    if margin_mb > 0 and free_bytes is not None and free_bytes < margin_mb * 1024 * 1024:
        raise InsufficientStorage()
    if pending > high_water:
        raise QueueFull()


def check_account(account: Account | None) -> Account:
    """MAIL: the credential's account must exist and may send."""
    if account is None or account.status == AccountStatus.FORBIDDEN:
        raise AccountForbidden()
    return account


def check_sender_domain(verified: bool) -> None:
    """MAIL FROM and From: domains must be verified domains of the account."""
    if not verified:
        raise DomainUnverified()


def check_recipient_count(accepted_so_far: int, max_recipients: int) -> None:
    """RCPT number ``max_recipients + 1`` and later: 452 4.5.3 (RFC 5321 §4.5.3.1.10)."""
    if accepted_so_far >= max_recipients:
        raise TooManyRecipients()


def check_pending_recipient(account: Account, sender_domain: str, rcpt_domain: str,
                            accepted_so_far: int) -> None:
    """RCPT for a pending account: only the sender's own domain, and at most 1,000
    recipient-sends in total (``store.queue.enqueue`` enforces the total again at commit)."""
    if account.status != AccountStatus.PENDING:
        return
    if rcpt_domain != sender_domain:
        raise RecipientForbidden()
    if account.sends_used + accepted_so_far + 1 > PENDING_SEND_LIMIT:
        raise SendLimitExceeded()


def channel_to_use(ref: ChannelRef, header_channel: str | None) -> str:
    """The channel id a message goes to: the credential's, or the header's on an account
    credential. A channel-scoped credential with a header naming another channel, or an
    account credential without the header, is ``channel_not_found``."""
    if ref.channel_id is not None:
        if header_channel is not None and header_channel.lower() != ref.channel_id.lower():
            raise ChannelNotFound()
        return ref.channel_id
    if header_channel is None:
        raise ChannelNotFound()
    return header_channel.lower()


def check_channel(ref: ChannelRef, channel: Channel | None) -> Channel:
    """The channel must exist (not deleted) and belong to the credential's account."""
    if channel is None or channel.account_id != ref.account_id:
        raise ChannelNotFound()
    return channel


def mail_type(listener: ListenerMailType, header: MailType | None) -> MailType:
    """The listener decides, or on a ``header`` listener the header (default transactional);
    a header naming the other type on a fixed listener is ``mail_type_conflict``."""
    if listener == ListenerMailType.HEADER:
        return header or MailType.TRANSACTIONAL
    fixed = MailType(listener.value)
    if header is not None and header != fixed:
        raise MailTypeConflict()
    return fixed


def tracking(channel: Channel, opens: bool | None, links: bool | None) -> tuple[bool, bool]:
    """Per-message tracking: the header overrides, else the channel's default."""
    return (channel.track_opens if opens is None else opens,
            channel.track_links if links is None else links)


def broadcast_group(name: str | None, subject: str, now: float) -> tuple[str, str]:
    """(broadcast_key, broadcast_name): by ``X-Helo-Broadcast``, else by Subject and UTC day."""
    if name:
        return f"name:{name}", name
    day = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%d")
    return f"subject:{day}:{subject}", f"{subject or '(no subject)'} ({day})"
