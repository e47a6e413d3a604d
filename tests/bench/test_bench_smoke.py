"""The benchmark harness, run small: a few dozen messages through every code path of
``python -m bench`` (Postfix and helo-smtp relays, load client, sinks, ceilings, isolation
probes, memory sampling, queue scaling, report), asserting what was counted. No timings are
asserted: numbers come only from ``bash bench/run.sh`` (docs/benchmarks.md).
"""

from __future__ import annotations

import json

import pytest

from bench import __main__ as bench_main
from bench import postfix, report
from bench.env import Layout
from tests.support.net import NET

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not postfix.available(),
                       reason="needs root and postfix, smtp-sink, smtp-source, saslpasswd2"),
]

COUNT = 12  # messages per accept run and per ceiling run
BACKLOG = 30  # broadcast messages in the isolation run


def test_bench_harness_end_to_end(tmp_path):
    """One test, not a module fixture: under xdist a shared fixture would run once per worker."""
    result = _run(tmp_path / "result.json")
    _check_throughput(result)
    _check_ceilings(result)
    _check_isolation(result)
    _check_memory(result)
    _check_queue_scaling(result)
    _check_report(result, tmp_path / "docs")


def _run(out):
    args = bench_main.parse([
        "--rounds", "1", "--count", str(COUNT), "--source-count", str(COUNT),
        "--iso-messages", str(BACKLOG), "--drain-seconds", "3", "--slow-delay", "1",
        "--memory-messages", str(BACKLOG), "--memory-seconds", "20",
        "--queue-sizes", "300", "--claim-batches", "2", "--idle-seconds", "0.1",
        "--out", str(out)])
    # This xdist worker's own loopback block, away from the suite's client/pool/MX addresses.
    layout = Layout(NET + "40", NET + "41", NET + "42", NET + "43")
    res = bench_main.run(args, layout)
    out.write_text(json.dumps(res, default=str))
    return json.loads(out.read_text())


def _runs(result):
    return result["throughput"]["rounds"][0]["runs"]


def _check_throughput(result):
    """Every relay ran both connection modes and every message was acked and delivered."""
    relays = ["postfix"] + (["helo-smtp"] if bench_main.helo_ready() else [])
    seen = {(r["relay"], r["mode"]) for r in _runs(result)}
    assert seen == {(n, m) for n in relays for m in ("per_connection", "persistent")}
    for run in _runs(result):
        assert run["acked"] == COUNT, run
        assert run["errors"] == {}, run
        assert run["received"] == COUNT and run["all_delivered"], run
        assert run["e2e_rate"] > 0 and run["accept_rate"] > 0


def _check_ceilings(result):
    ceilings = result["throughput"]["rounds"][0]["ceilings"]
    for mode in ("per_connection", "persistent"):
        assert ceilings[f"smtp_source_{mode}"]["received"] == COUNT
        assert ceilings[f"aiosmtpd_{mode}"]["acked"] == COUNT
        assert ceilings[f"aiosmtpd_{mode}"]["errors"] == {}


def _check_isolation(result):
    """The backlog was accepted and deferred; transactional probes got through."""
    for relay, iso in result["isolation"].items():
        assert iso["fill"]["acked"] == BACKLOG, relay
        assert iso["memory"]["settled"], relay  # every backlog message tried and deferred
        assert iso["memory"]["queued"] == BACKLOG, relay
        assert iso["memory"]["peak_rss"] > 0, relay
        drain = report.probe_stats(iso, "drain")
        assert drain["n"] >= 2 and drain["undelivered"] < drain["n"], (relay, iso["probes"])


def _check_memory(result):
    """helo-smtp started on a bulk-filled backlog tries every message (all deferred: 451)."""
    if not bench_main.helo_ready():
        return
    mem = result["helo_memory"]
    assert mem["settled"] and mem["attempted"] == BACKLOG, mem
    assert mem["queued"] == BACKLOG and mem["peak_rss"] > 0


def _check_queue_scaling(result):
    q = result["queue_scaling"]["300"]
    assert q["claimed"] == 2 * 200  # released after each claim, so the queue stays 300 deep
    assert q["tx_claimed"] == 5 * 200


def _check_report(result, docs):
    paths = report.write(result, docs)
    md = (docs / "benchmarks.md").read_text()
    for heading in ("## Targets", "## Machine", "## Throughput", "## Isolation",
                    "## Memory", "## Queue scaling", "## Every round", "## Reproduce"):
        assert heading in md
    assert f"| 1 | postfix | persistent | {COUNT} |" in md
    assert paths[0].name == "benchmarks.md"
