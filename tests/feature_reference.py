"""A brute-force reference for every feature aggregation: straight from the list of events,
no buckets held in place, no native code. The store must agree with it."""
from __future__ import annotations

from hanzo.server.features.definitions import CATEGORY_SLOTS, ENTITY_TTL_MS, FEATURES, Feature
from hanzo.server.features.store import ENTITY_KEY, field_value


def reference_value(feature: Feature, key: str, events: list[dict], as_of: int, category_slot) -> object:
    """The feature of entity `key` at `as_of`, from `events` (in the order they were applied);
    None where the store reports the value missing."""
    mine = [e for e in events if e["timestamp"] <= as_of and ENTITY_KEY[feature.entity](e) == key]
    ttl = ENTITY_TTL_MS[feature.entity]
    if ttl is not None:
        feeding = {s for f in FEATURES if f.entity == feature.entity for s in f.sources + f.denominator}
        seen = [e["timestamp"] for e in mine if e["event_type"] in feeding]
        if not seen or max(seen) <= as_of - ttl:  # forgotten: the store answers it as unknown
            return [] if feature.aggregation == "sequence" else None
    agg = feature.aggregation
    if feature.window:
        bucket_ms, buckets = feature.bucketing
        now = as_of // bucket_ms
        in_window = [e for e in mine if now - buckets < e["timestamp"] // bucket_ms <= now]
    if agg in ("count", "sum", "mean"):
        rows = [e for e in in_window if e["event_type"] in feature.sources]
        if agg == "count":
            return sum(feature.weights.get(e["event_type"], 1.0) for e in rows)
        values = [field_value(e, feature.field) for e in rows]
        values = [v for v in values if v is not None]
        if agg == "sum":
            return sum(values)
        return sum(values) / len(values) if values else None
    if agg == "rate":
        num = sum(1 for e in in_window if e["event_type"] in feature.sources)
        den = sum(1 for e in in_window if e["event_type"] in feature.denominator)
        return num / den if den else None
    if agg == "share":
        totals = [0.0] * CATEGORY_SLOTS
        for e in in_window:
            if e["event_type"] in feature.sources and e["payload"].get("product_id"):
                slot = category_slot(e["payload"]["product_id"])
                if slot is not None:
                    totals[slot] += feature.weights.get(e["event_type"], 1.0)
        total = sum(totals)
        return [t / total for t in totals] if total else None
    if agg == "distinct":
        window_ms = feature.window_ms
        return len({str(field_value(e, feature.field)) for e in mine
                    if e["event_type"] in feature.sources and field_value(e, feature.field)
                    and as_of - window_ms < e["timestamp"]})
    if agg == "last":
        valued = [e for e in mine if e["event_type"] in feature.sources and field_value(e, feature.field) is not None]
        if not valued:
            return None
        latest = max(e["timestamp"] for e in valued)
        return max(float(field_value(e, feature.field)) for e in valued if e["timestamp"] == latest)
    if agg == "span":
        stamps = [e["timestamp"] for e in mine if e["event_type"] in feature.sources]
        return (max(stamps) - min(stamps)) / 1000 if stamps else None
    if agg in ("since", "age"):
        stamps = [e["timestamp"] for e in mine if e["event_type"] in feature.sources]
        if not stamps:
            return None
        return (as_of - (max(stamps) if agg == "since" else min(stamps))) / 1000
    if agg == "total":
        values = [field_value(e, feature.field) for e in mine if e["event_type"] in feature.sources]
        values = [float(v) for v in values if v is not None]
        return sum(values) if values else None
    if agg in ("days", "first_day", "last_day"):
        days = {e["timestamp"] // 86_400_000 for e in mine if e["event_type"] in feature.sources}
        if not days:
            return None
        return float({"days": len(days), "first_day": min(days), "last_day": max(days)}[agg])
    if agg == "sequence":
        items = [field_value(e, feature.field) for e in mine
                 if e["event_type"] in feature.sources and field_value(e, feature.field)]
        return list(reversed(items))[: feature.length]
    raise AssertionError(agg)
