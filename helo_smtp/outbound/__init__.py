"""Delivery: two workers (one per mail type) take recipients from ``store.queue`` and deliver
them to the recipients' MX hosts themselves. Never imports ``helo_smtp.inbound``.

mx.py (DNS) -> connections.py (budget, idle reuse) -> session.py (aiosmtplib) ->
outcome.py (policy) / classify.py (categories) / retry.py (ladder) -> worker.py (records).
"""
