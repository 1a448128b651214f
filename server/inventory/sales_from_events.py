"""A sales table from the event log: units per day, product and location, from `purchase` events
(their `order_id` finds the order's `location`; a purchase without one counts at "ALL"). Every
product and location gets a row for every day from its first sale on, zero where nothing sold,
so a forecast sees the quiet days too."""
from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Iterable

import numpy as np

DAY_MS = 86_400_000


def daily_sales(records: Iterable[dict]) -> dict[tuple[str, str], dict[int, float]]:
    """(location, product_id) -> {day number: units}."""
    records = list(records)
    location_of = {r["payload"].get("order_id"): r["payload"].get("location") for r in records
                   if r["event_type"] == "order" and r["payload"].get("location")}
    units: dict[tuple[str, str], dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for r in records:
        if r["event_type"] != "purchase" or not r["payload"].get("product_id"):
            continue
        location = location_of.get(r["payload"].get("order_id")) or "ALL"
        units[(location, r["payload"]["product_id"])][r["timestamp"] // DAY_MS] += float(r["payload"].get("quantity")
                                                                                        or 1.0)
    return units


def write_sales_table(records: Iterable[dict], path: Path, until_ms: int | None = None) -> int:
    """The table `hanzo forecast` and `hanzo plan-inventory` read; rows to the last day with any
    sale (or the day before `until_ms`). Returns the rows written."""
    units = daily_sales(records)
    if not units:
        Path(path).write_text("date,location,sku,units,promo,holiday,open\n")
        return 0
    last = max(max(days) for days in units.values()) if until_ms is None else until_ms // DAY_MS - 1
    rows = 0
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["date", "location", "sku", "units", "promo", "holiday", "open"])
        for (location, product), days in sorted(units.items()):
            for day in range(min(days), last + 1):
                date = np.datetime64(day, "D")
                writer.writerow([str(date), location, product, f"{days.get(day, 0.0):g}", 0, 0, 1])
                rows += 1
    return rows
