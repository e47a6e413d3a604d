"""Tests of the other suites that also run on PostgreSQL by default (``tests/conftest.py``
parametrises their ``backend`` fixture over both backends; the files themselves are untouched).

Why these: every store-level rule is already run on both backends in ``tests/store`` and
``tests/pg``; here the point is the relay on top of PostgreSQL, one test per path where the
store does something different there. The submit path with idempotency (the key row written
first) and its concurrent race, suppressions and pending-account counters (upserts, the
account row updated last), broadcast grouping (upsert of the broadcast, JSON counters), a
revoked credential (reads through the pool); delivery, bounce with its suppression, retry,
queue isolation with a 3,000-message backlog and a mixed result (claims with SKIP LOCKED,
record, status refresh). Leases (lapse, release after a kill) are covered on PostgreSQL by
tests/pg. The rest of the suites exercise the listener and the worker, which are the same on
both backends; they can all be run on PostgreSQL with ``HELO_TEST_BACKEND=postgresql``
(docs/scaling.md). Together these add about 15 s of test time to the suite (a fresh database
per test is made ahead of time by a background thread).

Every test of tests/outbound runs on both backends through its own conftest (one ``backend``
parameter on ``make_cfg``'s ``database``), so none of them is listed here.
"""

ON_BOTH_BACKENDS = frozenset({
    "tests/inbound/test_idempotency.py::test_replay_returns_the_original_reply_and_queues_nothing",
    "tests/inbound/test_idempotency.py::test_concurrent_submissions_with_one_key_make_one_message",
    "tests/inbound/test_idempotency.py::test_a_key_older_than_an_hour_is_free_again",
    "tests/inbound/test_data.py::test_control_headers_are_read_stored_and_stripped",
    "tests/inbound/test_data.py::test_broadcast_grouping",
    "tests/inbound/test_data.py::test_suppressions",
    "tests/inbound/test_envelope.py::test_pending_account_rules",
    "tests/inbound/test_auth.py::test_revoked_credential_is_invalid",
    "tests/e2e/test_plain_delivery.py::test_plain_delivery",
    "tests/e2e/test_5xx_per_recipient.py::test_5xx_bounces_one_recipient_others_delivered",
    "tests/e2e/test_retry_after_4xx.py::test_4xx_then_delivered_on_retry",
    "tests/e2e/test_queue_isolation.py::test_broadcast_backlog_never_delays_transactional",
    "tests/e2e/test_mixed_rcpt.py::test_mixed_rcpt_results",
})
