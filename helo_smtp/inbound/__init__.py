"""The SMTP front door: listeners, AUTH, Helo's rules, durable accept.

``listener.InboundServer`` is what the daemon starts. ``protocol.HeloSMTP`` is the aiosmtpd
``SMTP`` subclass for one connection; ``handler.Handler`` holds the MAIL/RCPT/DATA hooks and is
the only place a ``HeloError`` becomes a reply. ``policy``, ``addresses``, ``controls``,
``templates``, ``headers`` and ``message`` are pure functions; ``directory`` and ``capacity``
are the only modules that read the store. Inbound never imports outbound: they meet in
``store.queue``.
"""
