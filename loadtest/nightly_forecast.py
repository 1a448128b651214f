"""The nightly forecast's cost: `hanzo plan-inventory` on each sales table, timed from a fresh
process (statsforecast's import and compilation included), with its peak memory, the
combination it chose and what it assumed.

    python -m hanzo.loadtest.nightly_forecast --table ../shared/data/walmart/sales.csv:13 \\
        --table ../shared/data/rossmann/sales.csv:42 --out loadtest/reports/nightly-forecast.json
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .reports import print_report


def one_table(sales: Path, horizon: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "points.csv"
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        started = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "hanzo.server.commands", "plan-inventory", "--sales", str(sales),
                              "--horizon", str(horizon), "--out", str(out), "--plan", str(Path(folder) / "plan.npz")],
                             capture_output=True, text=True, timeout=1200)
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if run.returncode != 0:
            raise SystemExit(f"plan-inventory failed on {sales}: {run.stderr[-2000:]}")
        series = sum(1 for _ in open(out)) - 1
    return {"sales": str(sales), "horizon": horizon, "seconds": round(seconds, 1), "series_with_points": series,
            "peak_rss_mib": round(max(peak, before) / 1024, 1), "said": run.stderr.strip().splitlines()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", action="append", required=True, help="PATH:HORIZON, repeated")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    tables = [one_table(Path(item.rsplit(":", 1)[0]), int(item.rsplit(":", 1)[1])) for item in args.table]
    print_report({"tables": tables, "total_seconds": round(sum(t["seconds"] for t in tables), 1)}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
