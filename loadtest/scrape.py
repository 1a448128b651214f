"""Server-side latency from the servers' Prometheus endpoints: the per-RPC histogram
(`hanzo_rpc_duration_seconds`) scraped before and after a load, summed over every URL given
(the workers of `hanzo serve --workers N`, whose Admin histograms are per process), with
quantiles interpolated within buckets as Prometheus' histogram_quantile does; and the
admission counters (refusals by reason, calls that finished after their deadline)."""
from __future__ import annotations

import math
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

FAMILY = "hanzo_rpc_duration_seconds"


def _page(url: str) -> str:
    with urllib.request.urlopen(url if "://" in url else f"http://{url}/metrics", timeout=10) as answer:
        return answer.read().decode()


def scrape(urls: list[str], method: str) -> dict[float, float]:
    """Cumulative count per upper bound (seconds; inf last) for `method`, summed over `urls`."""
    total: dict[float, float] = {}
    for url in urls:
        for family in text_string_to_metric_families(_page(url)):
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


def overload_counters(urls: list[str], methods: list[str]) -> dict[str, float]:
    """The server's counters of refused and late calls for `methods`, summed over `urls`:
    "late" (admitted calls whose handler returned after the client's deadline:
    hanzo_admission_late_total), "rpc_late" (the same for every gated call, admission control
    on or off: hanzo_rpc_late_total), "admitted", and "refused_<reason>". A counter the
    server does not export is absent (admission control off: no hanzo_admission_*)."""
    names = {"hanzo_admission_late_total": "late", "hanzo_rpc_late_total": "rpc_late",
             "hanzo_admission_admitted_total": "admitted"}
    total: dict[str, float] = {}
    for url in urls:
        for family in text_string_to_metric_families(_page(url)):
            if not family.name.startswith(("hanzo_admission_", "hanzo_rpc_late")):
                continue
            if family.name == "hanzo_rpc_late":  # exported with no sample until a first late call
                total.setdefault("rpc_late", 0.0)
            for sample in family.samples:
                if sample.labels.get("method") not in methods:
                    continue
                if sample.name == "hanzo_admission_refused_total":
                    key = f"refused_{sample.labels.get('reason')}"
                else:
                    key = names.get(sample.name)
                if key is not None:
                    total[key] = total.get(key, 0.0) + sample.value
    return total


def counter_deltas(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """What each counter gained between two scrapes (only those the later scrape has)."""
    return {key: value - before.get(key, 0.0) for key, value in sorted(after.items())}
