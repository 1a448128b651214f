"""What the overload benchmark (overload.py) concludes from its loads: whether a sweep step is
within capacity, when latency was back after an overload, and which of issue 17's goals a
setting met. Pure functions of the figures, so they are tested without a server."""
from __future__ import annotations

from typing import Any

# A step is within capacity when its p99 is at most this many times the unloaded p99 ...
WITHIN = 2.0
# ... and at most this share of its calls failed.
STEP_FAILURES = 0.001
# A recovery bucket is normal when at most this share of its calls failed.
BUCKET_FAILURES = 0.01


def step_passes(row: dict[str, Any], base_p99_ms: float) -> bool:
    """A sweep step ({"ok", "errors", "p99_ms"}) whose latency and failures stayed normal."""
    failed = sum(row["errors"].values())
    return (row["ok"] > 0 and row["p99_ms"] <= WITHIN * base_p99_ms
            and failed <= STEP_FAILURES * (row["ok"] + failed))


def _normal(row: dict[str, Any], base_p99_ms: float) -> bool:
    p99 = row.get("p99_ms")
    return p99 is not None and p99 <= WITHIN * base_p99_ms and row["errors"] <= BUCKET_FAILURES * row["sent"]


def recovery(series: list[dict[str, Any]], base_p99_ms: float, bucket_s: float, hold_s: float = 1.0,
             offset_s: float = 0.0) -> dict[str, float | None]:
    """When the series (rows of sent, errors, p99_ms per bucket of `bucket_s`) was back to
    normal: `first_within_s`, the first normal bucket's start; `recovered_s`, the start of the
    first run of normal buckets lasting `hold_s` (or to the end), so one lucky bucket is not a
    recovery. Both count from `offset_s` before the series began (None: never)."""
    normal = [_normal(row, base_p99_ms) for row in series]
    hold = max(1, round(hold_s / bucket_s))
    first = next((i for i, ok in enumerate(normal) if ok), None)
    settled = next((i for i in range(len(normal)) if all(normal[i:i + hold])), None)
    at = lambda i: None if i is None else round(offset_s + i * bucket_s, 3)  # noqa: E731
    return {"first_within_s": at(first), "recovered_s": at(settled), "hold_s": hold_s}


def goals(overload: dict[str, Any], rss_growth: float = 0.1, recovery_s: float = 2.0) -> dict[str, bool | None]:
    """Issue 17's goals for one setting's overload figures (overload.overload's dict); None
    where the figure is missing (a server without the late counter)."""
    shares = overload["failure_shares"]
    late = overload.get("server_late")
    before, after = overload.get("rss_kib_before"), overload.get("rss_kib_after")
    recovered = overload["recovery"].get("recovered_s")
    return {
        "goodput >= 70% of capacity": overload["goodput_share_of_capacity"] >= 0.7,
        ">= 90% of failures RESOURCE_EXHAUSTED": not shares or shares.get("RESOURCE_EXHAUSTED", 0.0) >= 0.9,
        "0 calls finished after their deadline": None if late is None else late == 0 and overload["late_ok"] == 0,
        "accepted p99 within 2x unloaded": overload["accepted_p99_over_unloaded"] <= WITHIN,
        "RSS flat": None if not before or not after else after <= before * (1 + rss_growth),
        "recovery within 2 s": recovered is not None and recovered <= recovery_s,
    }
