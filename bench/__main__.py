"""``python -m bench``: run the benchmark and write the results (and, with --report, the docs).

    python -m bench                      # the full run (see docs/benchmarks.md for the numbers)
    python -m bench --rounds 1 --seconds 3 --iso-messages 2000 --queue-sizes 1000  # a quick look
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench import machine, postfix, profile, queuefill, scenarios
from bench.env import Env, Layout
from bench.sinks import CSink

ROOT = Path(__file__).resolve().parent.parent


def helo_ready() -> bool:
    """The inbound listener and the delivery worker exist (they were written in parallel)."""
    return all(importlib.util.find_spec(m) is not None
               for m in ("helo_smtp.inbound.listener", "helo_smtp.outbound.worker"))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of one accept run")
    p.add_argument("--count", type=int, default=None,
                   help="messages per accept run instead of --seconds (smoke runs)")
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--source-count", type=int, default=10_000,
                   help="messages per smtp-source ceiling run")
    p.add_argument("--iso-messages", type=int, default=100_000,
                   help="broadcast backlog submitted over SMTP for the isolation run (0: skip)")
    p.add_argument("--memory-messages", type=int, default=100_000,
                   help="helo-smtp memory run: bulk-filled undeliverable backlog (0: skip)")
    p.add_argument("--memory-seconds", type=float, default=90.0,
                   help="how long to watch helo-smtp work through that backlog")
    p.add_argument("--drain-seconds", type=float, default=60.0,
                   help="transactional probes while the backlog drains")
    p.add_argument("--slow-delay", type=int, default=1,
                   help="smtp-sink -w: whole seconds the broadcast destination waits at DATA")
    p.add_argument("--queue-sizes", default="1000,100000,1000000",
                   help="queued rows for the claim-time runs (empty: skip)")
    p.add_argument("--claim-batches", type=int, default=30)
    p.add_argument("--relays", default="postfix,helo-smtp")
    p.add_argument("--profile", action="store_true",
                   help="after the rounds, sample helo-smtp with py-spy during one run per mode")
    p.add_argument("--whatif", default="",
                   help="also run helo-smtp with a bench.whatif experiment (a function there),"
                        " interleaved with Postfix, reported apart from the main numbers")
    p.add_argument("--whatif-rounds", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "latest.json"))
    p.add_argument("--report", action="store_true",
                   help="write docs/benchmarks.md and the charts from the results")
    p.add_argument("--report-from", default="",
                   help="run nothing: write the docs from this results file")
    p.add_argument("--queue-into", default="",
                   help="run only the queue-scaling part and store it in this results file"
                        " (the rest of the file is kept; the docs say when each part ran)")
    p.add_argument("--profile-into", default="",
                   help="run only the py-spy sampling of helo-smtp (one run per mode) and store"
                        " it in this results file (the rest of the file is kept)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--idle-seconds", type=float, default=3.0,
                   help="how long to watch the idle machine before and after the run")
    return p.parse_args(argv)


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def _accept(relay: Any, sink: CSink, args: argparse.Namespace, persistent: bool) -> Any:
    return scenarios.accept_run(relay, sink, persistent=persistent,
                                duration=None if args.count else args.seconds,
                                count=args.count, concurrency=args.concurrency)


def _ceilings(env: Env, sink: CSink, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for persistent in (False, True):
        mode = "persistent" if persistent else "per_connection"
        out[f"aiosmtpd_{mode}"] = scenarios.client_ceiling(
            env, persistent=persistent, duration=None if args.count else args.seconds,
            count=args.count, concurrency=args.concurrency)
        out[f"smtp_source_{mode}"] = scenarios.source_ceiling(
            env, sink, persistent=persistent, count=args.source_count,
            concurrency=args.concurrency)
    return out


def throughput(env: Env, args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    sink = env.track(CSink(env.layout.tx_ip, env.sink_port).start())
    relays = {n: env.postfix("pf-tput") if n == "postfix" else env.helo("helo-tput")
              for n in names}
    rounds = []
    for r in range(args.rounds):
        runs = _round(r, relays, sink, args)
        ceilings = _ceilings(env, sink, args)
        log(f"round {r + 1} ceilings " + ", ".join(
            f"{k} {v['rate']:.0f}/s" for k, v in ceilings.items()))
        rounds.append({"round": r + 1, "runs": runs, "ceilings": ceilings})
    prof = _profile(relays.get("helo-smtp"), sink, env, args) if args.profile else None
    whatif = None
    if args.whatif and "helo-smtp" in relays:
        relays["helo-smtp"].stop()
        relays["helo-smtp"] = env.helo("helo-whatif", whatif=(args.whatif,))
        whatif = {"experiment": args.whatif,
                  "rounds": [{"round": r + 1, "runs": _round(r, relays, sink, args)}
                             for r in range(args.whatif_rounds)]}
        if args.profile:  # where the time goes once that cost is gone: the next hot spots
            whatif["profile"] = _profile(relays["helo-smtp"], sink, env, args)
    for relay in relays.values():
        relay.stop()
    sink.stop()
    return {"rounds": rounds, "profile": prof, "whatif": whatif}


def _round(r: int, relays: dict[str, Any], sink: CSink, args: argparse.Namespace
           ) -> list[dict[str, Any]]:
    """Every relay in both connection modes; who goes first alternates between rounds."""
    names = list(relays)
    order = names if r % 2 == 0 else names[::-1]
    runs = []
    for name in order:
        for persistent in (False, True):
            res = _accept(relays[name], sink, args, persistent)
            res.update(relay=name, mode="persistent" if persistent else "per_connection")
            log(f"round {r + 1} {name:9} {res['mode']:14} accept {res['accept_rate']:7.1f}/s"
                f" e2e {res['e2e_rate'] or 0:7.1f}/s errors {res['errors']}")
            runs.append(res)
    return runs


def _profile(relay: Any, sink: CSink, env: Env, args: argparse.Namespace) -> Any:
    if relay is None or profile.py_spy() is None:
        return None
    out: dict[str, Any] = {}
    for persistent in (False, True):
        mode = "persistent" if persistent else "per_connection"
        raw = env.workdir / f"pyspy-{mode}.txt"
        spy = profile.start(relay.pid, args.seconds, raw)
        res = _accept(relay, sink, args, persistent)
        _, err = spy.communicate(timeout=120)
        if not raw.exists():
            log(f"py-spy failed: {err.decode(errors='replace')[-300:]}")
            continue
        out[mode] = {"accept_rate": res["accept_rate"], **profile.summarize(raw)}
        log(f"profiled {mode}: {out[mode]['samples']} samples")
    return out


def isolation(env: Env, args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    out = {}
    for name in names:
        log(f"isolation + memory: {name}, {args.iso_messages:,} broadcast messages")
        make = (lambda: env.postfix("pf-iso")) if name == "postfix" else (
            lambda: env.helo("helo-iso"))
        out[name] = scenarios.isolation_and_memory(
            env, make, messages=args.iso_messages, drain_seconds=args.drain_seconds,
            slow_delay=args.slow_delay, log=log)
    return out


def idle_load(seconds: float = 3.0) -> dict[str, float]:
    """What the machine does while the benchmark does nothing (other people's work)."""
    a = machine.sample()
    time.sleep(seconds)
    return machine.usage(a, machine.sample())


def run(args: argparse.Namespace, layout: Layout | None = None) -> dict[str, Any]:
    names = [n for n in args.relays.split(",") if n]
    if "helo-smtp" in names and not helo_ready():
        log("helo-smtp's listener/worker are not there yet: Postfix side only")
        names.remove("helo-smtp")
    if not postfix.available():
        raise SystemExit("bench needs root and postfix, smtp-sink, smtp-source, saslpasswd2")
    env = Env(layout or Layout(), keep=args.keep).start()
    result: dict[str, Any] = {"machine": machine.facts(), "params": vars(args),
                              "command": "python -m bench " + " ".join(sys.argv[1:]),
                              "started": time.time(),
                              "idle_before": idle_load(args.idle_seconds)}
    try:
        result["throughput"] = throughput(env, args, names)
        if args.iso_messages:
            result["isolation"] = isolation(env, args, names)
        if args.memory_messages and "helo-smtp" in names:
            log(f"memory: helo-smtp on {args.memory_messages:,} bulk-filled messages")
            result["helo_memory"] = scenarios.helo_memory(
                env, messages=args.memory_messages, seconds=args.memory_seconds, log=log)
        sizes = [int(s) for s in args.queue_sizes.split(",") if s]
        if sizes:
            log("queue scaling: " + ", ".join(f"{s:,}" for s in sizes))
            result["queue_scaling"] = queuefill.scaling(env.workdir, sizes, log=log,
                                                        batches=args.claim_batches)
    finally:
        env.close()
    result["idle_after"] = idle_load(args.idle_seconds)
    result["finished"] = time.time()
    return result


def _queue_into(args: argparse.Namespace) -> dict[str, Any]:
    """Re-measure the queue scaling alone into an existing results file."""
    import tempfile

    result = json.loads(Path(args.queue_into).read_text())
    sizes = [int(s) for s in args.queue_sizes.split(",") if s]
    with tempfile.TemporaryDirectory(prefix="helo-bench-queue-") as work:
        result["queue_scaling"] = queuefill.scaling(Path(work), sizes, log=log,
                                                    batches=args.claim_batches)
    result["queue_scaling_at"] = time.time()
    args.out = args.queue_into
    return result


def _profile_into(args: argparse.Namespace) -> dict[str, Any]:
    """Re-sample where helo-smtp spends its time into an existing results file."""
    result = json.loads(Path(args.profile_into).read_text())
    env = Env(Layout(), keep=args.keep).start()
    try:
        sink = env.track(CSink(env.layout.tx_ip, env.sink_port).start())
        relay = env.helo("helo-tput")
        result["throughput"]["profile"] = _profile(relay, sink, env, args)
        relay.stop()
        sink.stop()
    finally:
        env.close()
    result["profile_at"] = time.time()
    args.out = args.profile_into
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.report_from:
        result = json.loads(Path(args.report_from).read_text())
        args.out = args.report_from
    elif args.queue_into:
        result = _queue_into(args)
    elif args.profile_into:
        result = _profile_into(args)
    else:
        result = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str))
    log(f"results: {out}")
    if args.report:
        from bench import report

        for path in report.write(result, ROOT / "docs"):
            log(f"wrote {path}")


if __name__ == "__main__":
    main()
