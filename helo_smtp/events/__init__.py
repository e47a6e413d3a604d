"""Events and webhooks (SPEC §12): the public event shape, webhook signing, the SSRF guard and
the dispatcher that POSTs pending deliveries from the store's outbox."""
