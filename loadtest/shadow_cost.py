"""What shadowing costs the primary: Recommend on the demo world at a steady open-loop rate,
with a candidate answering a copy of every request ([shadow] share = 1) and without.

    python -m hanzo.loadtest.shadow_cost --out loadtest/reports/shadow-cost.json
        [--workdir DIR] [--rate 500] [--seconds 20] [--rounds 4] [--server-cpus 0 --client-cpus 1]

The demo world is built in `--workdir` by a first start; a recommend candidate is then
retrained from its event log (`hanzo retrain recommend`) unless one is there. Each round starts
a server without the shadow, one with it, and one without again (the with-shadow run first in
every other round, so drift over the run falls on both; each left to settle, pinned to the
server's CPUs, the load on the others), resets the server's own latency histograms, loads it,
and reads them back: the primary's server p50 / p99 / p99.9 (edge entry to answer) is what the
issue's goal is about, the client's from each call's due time beside it, and how many copies
the candidate answered (its log's lines). The second run without the shadow is an A/A
comparison: how far two identical runs differ on this machine. The goal: the server p99 of all
rounds' calls pooled, with the shadow, within 1.1x of the pooled one without."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from . import targets
from .fuzz_server import start_demo, stop
from hdrh.histogram import HdrHistogram

from .openloop import LoadSpec, new_histogram, parse_cpus, run_load
from .overload import settle
from .reports import write_report
from .runner import _server_latency

METHOD = "/hanzo.v1.Commerce/Recommend"
SETTINGS = {"off": "[shadow]\nshare = 0.0\n", "on": "[shadow]\nshare = 1.0\ncpu_share = 1.0\n"}


def demo_with_candidate(workdir: Path, epochs: int) -> int:
    """The demo world in `workdir` (built by a first start if it is not there) and its
    recommend candidate's version, retrained from the demo's event log if there is none."""
    from hanzo.server.models.production import read_pointer

    stop(start_demo(workdir, "serve-first.log").process)

    model_dir = workdir / "model_repo" / "recommend"
    pointer = read_pointer(model_dir)
    versions = [int(p.name) for p in model_dir.iterdir() if p.name.isdigit()]
    if pointer is not None and max(versions) > pointer.version:
        return max(versions)
    out = subprocess.run([sys.executable, "-m", "hanzo.server.commands", "retrain", "recommend", "--data-dir",
                          str(workdir / "data"), "--model-repo", str(workdir / "model_repo"), "--catalog",
                          str(workdir / "demo_world" / "catalog.jsonl"), "--epochs", str(epochs), "--seed", "1"],
                         capture_output=True, text=True, timeout=3600, check=True)
    return json.loads(out.stdout)["candidate_version"]


def _lines(path: Path) -> int:
    """The shadow log's lines (its file is made by the server's first copy; a demo's start
    that moves the history forward starts a fresh data directory, so it is counted per run)."""
    return len(path.read_text().splitlines()) if path.exists() else 0


def one_setting(workdir: Path, setting: str, args: argparse.Namespace) -> tuple[dict, str]:
    """One server run; its row, and its own histogram encoded (pooled across rounds)."""
    config = workdir / f"shadow-{setting}.toml"
    config.write_text(SETTINGS[setting])
    lines = workdir / "data" / "shadow" / "recommend.jsonl"
    served = start_demo(workdir, f"serve-shadow-{setting}.log", ("--config", str(config)),
                        parse_cpus(args.server_cpus))
    try:
        settle(served.pid)
        target = targets.commerce("Recommend", demo_manifest=workdir / "demo_world" / "demo.json")
        spec = LoadSpec(served.url, target.method, target.request, requests=target.requests, rate=args.rate,
                        duration_s=args.seconds, warmup_s=0.0, timeout_s=1.0, cpus=parse_cpus(args.client_cpus))
        run_load(replace(spec, duration_s=3.0))  # warm: caches, the candidate's first calls
        time.sleep(1.0)  # the warm-up's copies written
        before = _lines(lines)
        _server_latency(served.url, METHOD, reset=True)
        result = run_load(spec)
        server = _server_latency(served.url, METHOD, reset=False)
        time.sleep(1.0)  # the last copies run and written
        copies = _lines(lines) - before
    finally:
        stop(served.process)
    h = result.corrected
    return {"sent": result.sent, "ok": result.ok, "errors": result.errors,
            "server_ms": {"count": server.count, "p50": server.p50_us / 1000, "p99": server.p99_us / 1000,
                          "p999": server.p999_us / 1000},
            "client_ms": {"p50": h.get_value_at_percentile(50) / 1000, "p99": h.get_value_at_percentile(99) / 1000,
                          "p999": h.get_value_at_percentile(99.9) / 1000},
            "candidate_copies": copies, "copied_share": round(copies / max(result.sent, 1), 4)}, server.hdr_histogram


def _pooled(encoded: list[str]) -> dict:
    pooled = new_histogram()
    for text in encoded:
        pooled.add(HdrHistogram.decode(text))
    return {"count": pooled.get_total_count(), "p50": pooled.get_value_at_percentile(50) / 1000,
            "p99": pooled.get_value_at_percentile(99) / 1000, "p999": pooled.get_value_at_percentile(99.9) / 1000}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hanzo.loadtest.shadow_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hanzo-shadow-cost"))
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3, help="the candidate's training passes")
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--client-cpus", default="1")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    candidate = demo_with_candidate(args.workdir, args.epochs)
    rounds, encoded = [], {"off": [], "on": [], "off_again": []}
    for number in range(args.rounds):
        # off, on, off again; every other round on first, so drift over the run falls on both
        order = ("off", "on", "off_again") if number % 2 == 0 else ("on", "off", "off_again")
        row = {}
        for name in order:
            row[name], histogram = one_setting(args.workdir, name.removesuffix("_again"), args)
            encoded[name].append(histogram)
        row["order"] = list(order)
        row["server_p99_ratio"] = round(row["on"]["server_ms"]["p99"] / row["off"]["server_ms"]["p99"], 3)
        row["a_a_server_p99_ratio"] = round(row["off_again"]["server_ms"]["p99"] / row["off"]["server_ms"]["p99"], 3)
        print(f"round {number + 1}: server p99 off {row['off']['server_ms']['p99']:.2f} ms, on "
              f"{row['on']['server_ms']['p99']:.2f} ms ({row['server_p99_ratio']}x), off again "
              f"{row['off_again']['server_ms']['p99']:.2f} ms ({row['a_a_server_p99_ratio']}x)", file=sys.stderr)
        rounds.append(row)
    pooled = {name: _pooled(texts) for name, texts in encoded.items()}
    ratio = round(pooled["on"]["p99"] / pooled["off"]["p99"], 3)
    report = {"rpc": "Recommend", "rate": args.rate, "seconds": args.seconds, "candidate_version": candidate,
              "server_cpus": args.server_cpus, "client_cpus": args.client_cpus, "rounds": rounds,
              "pooled_server_ms": pooled, "pooled_server_p99_ratio": ratio,
              "pooled_a_a_server_p99_ratio": round(pooled["off_again"]["p99"] / pooled["off"]["p99"], 3),
              "round_ratios": [r["server_p99_ratio"] for r in rounds],
              "round_a_a_ratios": [r["a_a_server_p99_ratio"] for r in rounds],
              "goal_within_1_1x": ratio <= 1.1}
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
