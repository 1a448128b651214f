"""Server-side latency from the servers' Prometheus endpoints: the per-RPC histogram
(`hanzo_rpc_duration_seconds`) scraped before and after a load, summed over every URL given
(the workers of `hanzo serve --workers N`, whose Admin histograms are per process), with
quantiles interpolated within buckets as Prometheus' histogram_quantile does."""
from __future__ import annotations

import math
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

FAMILY = "hanzo_rpc_duration_seconds"


def scrape(urls: list[str], method: str) -> dict[float, float]:
    """Cumulative count per upper bound (seconds; inf last) for `method`, summed over `urls`."""
    total: dict[float, float] = {}
    for url in urls:
        with urllib.request.urlopen(url if "://" in url else f"http://{url}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        for family in text_string_to_metric_families(text):
            if family.name != FAMILY:
                continue
            for sample in family.samples:
                if sample.name.endswith("_bucket") and sample.labels.get("method") == method:
                    bound = float(sample.labels["le"])
                    total[bound] = total.get(bound, 0.0) + sample.value
    return dict(sorted(total.items()))


def quantiles(before: dict[float, float], after: dict[float, float], qs=(50, 99, 99.9)) -> dict[str, float]:
    """Milliseconds at the quantiles of what happened between two scrapes (plus the count)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    out: dict[str, float] = {"count": total}
    if total <= 0:
        return out
    for q in qs:
        rank = total * q / 100
        for i, (bound, cumulative) in enumerate(zip(bounds, counts)):
            if cumulative >= rank:
                lower = bounds[i - 1] if i else 0.0
                below = counts[i - 1] if i else 0.0
                if math.isinf(bound):  # past the last bound: Prometheus answers the last finite one
                    value = lower
                else:
                    share = (rank - below) / max(cumulative - below, 1e-12)
                    value = lower + (bound - lower) * share
                out[f"p{q:g}"] = value * 1000
                break
    return out
