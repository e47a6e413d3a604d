"""Delivery: two workers (one per mail type) take recipients from ``store.queue`` and deliver
them to the recipients' MX hosts themselves. Never imports ``helo_smtp.inbound``.

worker.py (claim, hooks, records) -> delivery.py (one attempt, host by host) ->
mx.py (DNS) / connections.py (idle reuse, source addresses) / session.py (aiosmtplib) ->
translate.py (foreign exceptions -> outcomes) -> outcome.py (policy) / classify.py (categories)
-> records.py + retry.py (what is stored). dkim.py signs; pacing.py paces broadcast.
"""
