"""From an attempt's verdicts to what is kept: ``DeliveryResult`` rows for ``store.queue.record``
(which writes the attempt, the state, the events and any hard-bounce suppression in one
transaction), the delivery metrics, and one ``helo_smtp.delivery`` log line per recipient
attempt (key=value, like Postfix's ``status=sent``/``deferred``/``bounced`` lines)."""

from __future__ import annotations

import logging
import time

from helo_smtp.config import DeliveryConfig
from helo_smtp.models import (
    FINAL_STATES,
    ClaimedRecipient,
    DeliveryResult,
    MailType,
    RecipientState,
)
from helo_smtp.outbound.delivery import Settled
from helo_smtp.outbound.outcome import Action, Outcome
from helo_smtp.outbound.retry import after_deferral
from helo_smtp.runtime import metrics
from helo_smtp.runtime.logs import kv

log = logging.getLogger("helo_smtp.delivery")


def to_result(row: ClaimedRecipient, s: Settled, cfg: DeliveryConfig,
              now: float | None = None) -> DeliveryResult:
    """The stored form of one verdict; a deferral past the lifetime becomes EXPIRED."""
    now = time.time() if now is None else now
    o = s.outcome
    due: float | None = None
    text = o.text
    if s.action == Action.DELIVERED:
        state = RecipientState.DELIVERED
    elif s.action == Action.BOUNCE:
        state = RecipientState.BOUNCED
    else:
        state, due = after_deferral(row.attempts, row.expires_at, now, cfg)
        if state == RecipientState.EXPIRED:
            text = f"lifetime expired; last error: {o.line()}"
    return DeliveryResult(
        row.id, state, o.stage, text, code=o.code, status=o.status,
        category=None if state == RecipientState.DELIVERED else o.category,
        remote_host=s.route.host if s.route else None,
        remote_ip=s.route.ip if s.route else None, source_ip=s.source_ip, tls=s.tls,
        next_attempt_at=due, at=now, channel_id=row.channel_id, broadcast_id=row.broadcast_id)


def expired(row: ClaimedRecipient, now: float) -> DeliveryResult:
    """A recipient claimed after its lifetime ended (held, or the relay was down)."""
    return DeliveryResult(row.id, RecipientState.EXPIRED, "queue",
                          "lifetime expired before delivery", status="4.4.7", at=now,
                          channel_id=row.channel_id, broadcast_id=row.broadcast_id)


def observe(mail_type: MailType, row: ClaimedRecipient, res: DeliveryResult) -> None:
    """Metrics and the log line for one recorded result."""
    mt = mail_type.value
    metrics.DELIVERY_ATTEMPTS.labels(mail_type=mt, outcome=res.state.value).inc()
    if res.state in FINAL_STATES:
        category = res.category.value if res.category else ""
        metrics.RECIPIENTS_FINAL.labels(mail_type=mt, state=res.state.value,
                                        category=category).inc()
    if res.state == RecipientState.DELIVERED:
        metrics.DELIVERY_LATENCY.labels(mail_type=mt).observe(max(0.0, res.at - row.created_at))
    reply = Outcome(res.stage, res.text, res.code, res.status).line()
    log.info(kv(event="delivery", message_id=row.message_id, rcpt_id=row.id,
                domain=row.domain, mail_type=mt, state=res.state.value, stage=res.stage,
                attempt=row.attempts + 1, host=res.remote_host or "", ip=res.remote_ip or "",
                source=res.source_ip or "", tls=res.tls,
                category=res.category.value if res.category else "",
                delay=round(res.at - row.created_at, 3), reply=reply))
