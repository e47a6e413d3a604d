"""bench/webhooks.py cannot rot: a few dozen events through the same harness, and its docs
section survives a rewrite of docs/benchmarks.md."""

from __future__ import annotations

import multiprocessing

from bench import webhooks


def test_dispatcher_bench_smoke():
    port, ready = multiprocessing.Value("i", 0), multiprocessing.Event()
    proc = multiprocessing.Process(target=webhooks._receiver, args=(port, "whsec_t", ready),
                                   daemon=True)
    proc.start()
    try:
        assert ready.wait(30)
        assert webhooks.run_one(30, 4, port.value, "whsec_t") > 0  # and all 30 delivered
    finally:
        proc.terminate()
        proc.join(10)


def test_section_is_spliced_and_kept(tmp_path):
    sec = webhooks.section([(10, 4, 123.0)], "1.0")
    text = webhooks.splice("# Benchmarks\n", sec)
    assert text.count(webhooks.BEGIN) == 1 and "| 10 | 4 | 123 |" in text
    again = webhooks.splice(text, webhooks.section([(10, 4, 456.0)], "1.0"))
    assert again.count(webhooks.BEGIN) == 1 and "| 10 | 4 | 456 |" in again
    md = tmp_path / "benchmarks.md"
    md.write_text(again)
    assert webhooks.kept(md).startswith(webhooks.BEGIN) and "456" in webhooks.kept(md)
