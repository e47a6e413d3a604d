"""Value types that cross module borders. Imports nothing from the package."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum


class MailType(StrEnum):
    TRANSACTIONAL = "transactional"
    BROADCAST = "broadcast"


class ListenerMailType(StrEnum):
    """How a listener decides the mail type: from a header, or fixed."""

    HEADER = "header"
    TRANSACTIONAL = "transactional"
    BROADCAST = "broadcast"


class AccountStatus(StrEnum):
    ACTIVE = "active"
    PENDING = "pending"
    FORBIDDEN = "forbidden"


class RecipientState(StrEnum):
    QUEUED = "queued"
    DEFERRED = "deferred"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    EXPIRED = "expired"
    SUPPRESSED = "suppressed"


FINAL_STATES = (
    RecipientState.DELIVERED,
    RecipientState.BOUNCED,
    RecipientState.EXPIRED,
    RecipientState.SUPPRESSED,
)


class MessageStatus(StrEnum):
    ACCEPTED = "accepted"
    DELAYED = "delayed"
    FAILED = "failed"


class SuppressionReason(StrEnum):
    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    MANUAL = "manual"


class BounceCategory(StrEnum):
    INVALID_RECIPIENT = "invalid_recipient"
    MAILBOX_FULL = "mailbox_full"
    DOMAIN_NOT_FOUND = "domain_not_found"
    POLICY = "policy"
    SPAM_BLOCK = "spam_block"
    REPUTATION = "reputation"
    RATE_LIMITED = "rate_limited"
    CONTENT = "content"
    TLS = "tls"
    DNS = "dns"
    CONNECTION = "connection"
    OTHER = "other"


#: Only these hard-bounce categories put the address on the channel's suppression list.
SUPPRESSING_CATEGORIES = frozenset(
    {BounceCategory.INVALID_RECIPIENT, BounceCategory.DOMAIN_NOT_FOUND})


@dataclass(frozen=True, slots=True)
class ChannelRef:
    """What a successful SMTP AUTH maps to; stored on ``session.auth_data``."""

    credential_id: str
    username: str
    account_id: str
    channel_id: str | None  # None: account-wide credential, X-Helo-Channel-Id required
    # Test mode (SPEC §15): every rule runs, nothing is delivered. A property of whatever
    # authenticated the client (an SMTP credential now, an API key later), not of the channel.
    test: bool = False


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An HTTP send API key (SPEC §11): scoped like a credential; the secret is never kept."""

    id: str
    account_id: str
    channel_id: str | None
    name: str
    created_at: float
    last_used_at: float | None = None
    revoked_at: float | None = None


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    name: str
    status: AccountStatus
    sends_used: int
    created_at: float


@dataclass(frozen=True, slots=True)
class Domain:
    id: str
    account_id: str
    name: str
    verified: bool
    verify_token: str
    dkim_selector: str
    dkim_private_key: str
    dkim_public_key: str
    created_at: float
    verified_at: float | None = None


@dataclass(frozen=True, slots=True)
class Channel:
    id: str
    account_id: str
    name: str
    track_opens: bool
    track_links: bool
    created_at: float


@dataclass(frozen=True, slots=True)
class Credential:
    id: str
    username: str
    account_id: str
    channel_id: str | None
    name: str
    created_at: float
    revoked_at: float | None = None
    test: bool = False  # test mode: messages are recorded and simulated, never delivered


@dataclass(frozen=True, slots=True)
class Suppression:
    channel_id: str
    address: str
    reason: SuppressionReason
    created_at: float
    source_message_id: str | None = None


@dataclass(slots=True)
class NewMessage:
    """A message ready to be committed by ``store.queue.enqueue``."""

    id: str
    account_id: str
    channel_id: str
    mail_type: MailType
    sender: str
    recipients: list[str]  # to be queued
    suppressed: list[str]  # recorded as state 'suppressed'
    raw: bytes  # final bytes: control headers stripped, Received/Message-ID added
    subject: str = ""
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    track_opens: bool = False
    track_links: bool = False
    broadcast_key: str | None = None  # "name:<X-Helo-Broadcast>" or "subject:<day>:<subject>"
    broadcast_name: str | None = None  # shown in `broadcasts list`
    idempotency_key: str | None = None
    fingerprint: str | None = None
    reply: str = ""  # the 250 line, stored for idempotent replay
    created_at: float = field(default_factory=time.time)
    test: bool = False  # test mode: outcomes are simulated at commit (store/testmode.py)


def uuid7() -> str:
    """A UUIDv7 (RFC 9562 §5.7): 48-bit Unix ms timestamp, version, random bits."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def address_domain(address: str) -> str:
    """The domain part of an address, lower-cased ('' when there is none)."""
    return address.rpartition("@")[2].lower() if "@" in address else ""


@dataclass(frozen=True, slots=True)
class ClaimedRecipient:
    """A recipient leased to a delivery worker by ``store.queue.claim``."""

    id: int
    message_id: str
    address: str
    domain: str
    mail_type: MailType
    attempts: int
    expires_at: float
    channel_id: str
    account_id: str
    sender: str
    broadcast_id: str | None
    created_at: float


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What one delivery attempt did to one recipient, for ``store.queue.record``.

    ``state`` is DELIVERED, DEFERRED, BOUNCED or EXPIRED; for DEFERRED, ``next_attempt_at`` is
    when it is due again.
    """

    recipient_id: int
    state: RecipientState
    stage: str  # connect, banner, ehlo, starttls, mail, rcpt, data, dns, deadline
    text: str
    code: int | None = None
    status: str | None = None  # enhanced status
    category: BounceCategory | None = None
    remote_host: str | None = None
    remote_ip: str | None = None
    source_ip: str | None = None
    tls: bool = False
    next_attempt_at: float | None = None
    at: float = field(default_factory=time.time)
    # The message's channel and broadcast as the claim read them; with ``channel_id`` given
    # the store need not look them up again (None: it does).
    channel_id: str | None = None
    broadcast_id: str | None = None


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A committed message as the delivery side needs it."""

    id: str
    account_id: str
    channel_id: str
    mail_type: MailType
    sender: str
    raw: bytes
    track_opens: bool
    track_links: bool
    broadcast_id: str | None
    tags: list[str]
    metadata: dict[str, str]
    created_at: float


def stored_message(msg: NewMessage, broadcast_id: str | None) -> StoredMessage:
    """``msg`` as the delivery side reads it back once committed."""
    return StoredMessage(msg.id, msg.account_id, msg.channel_id, msg.mail_type, msg.sender,
                         msg.raw, msg.track_opens, msg.track_links, broadcast_id, msg.tags,
                         msg.metadata, msg.created_at)
