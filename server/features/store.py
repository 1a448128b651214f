"""The online feature store, embedded: every feature of definitions.FEATURES kept in tables
updated in place per batch of events (O(1) per event), read for any list of entities in one
native call. The same class, fed the log in event-time order, is the offline join."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from hanzo import _native

from . import expiry
from .catalog import CatalogState
from .graph import EntityGraph
from .definitions import CATEGORY_SLOTS, ENTITIES, ENTITY_TTL_MS, FEATURES, LIFETIME, Feature
from .plans import PlanCache
from .tables import (DistinctTable, EntityIndex, LastTable, LifetimeTable, SequenceTable, SpanTable, Table,
                     WindowTable)

CATALOG_EVENTS = frozenset({"catalog_update", "price_change", "stock_update", "purchase"})

# How each entity is found in an event.
ENTITY_KEY: dict[str, Callable[[dict], Any]] = {
    "user": lambda r: r.get("user_id"),
    "session": lambda r: r.get("session_id") or None,
    "product": lambda r: r["payload"].get("product_id"),
    "card": lambda r: r["payload"].get("card_id"),
    "device": lambda r: r["payload"].get("device_id") or (r.get("context") or {}).get("device"),
    "address": lambda r: r["payload"].get("shipping_address_id"),
}


def field_value(record: dict, name: str) -> Any:
    payload = record["payload"]
    if name == "user_id":
        return record.get("user_id")
    if name == "device_id":
        return payload.get("device_id") or (record.get("context") or {}).get("device")
    if name == "quantity" and record["event_type"] == "purchase":
        return payload.get("quantity") or 1.0
    if name == "amount" and record["event_type"] == "purchase" and payload.get("amount") is None:
        price = payload.get("price")
        return None if price is None else price * (payload.get("quantity") or 1.0)
    return payload.get(name)


@dataclass
class _Update:
    """One thing an event of some type does to one table."""
    table: Table
    entity: str
    kind: str  # window | sequence | distinct | last | span | share
    column: int = 0
    weight: float = 1.0
    field: str | None = None


@dataclass
class FeatureBlock:
    """An answer for a list of entities: the scalar features as one float32 matrix with its
    missing mask and (name, first column, width) layout, and each sequence feature as the
    entities' items one after the other with a count per entity."""
    values: np.ndarray
    missing: np.ndarray
    layout: list[tuple[str, int, int]]
    sequences: dict[str, tuple[list[str], np.ndarray]]


@dataclass
class FeatureRead:
    """Where a feature's value is read from."""
    feature: Feature
    table: Table
    column: int = 0
    denominator_column: int = -1


class FeatureStore:
    def __init__(self, features: Iterable[Feature] = FEATURES, plan_cache: int = 64) -> None:
        self.features = {f.name: f for f in features}
        self.entities = {name: EntityIndex(name) for name in ENTITIES}
        # Newest event time per entity row, for the entity TTL (definitions.ENTITY_TTL_MS).
        self.last_seen = {name: np.zeros(0, dtype=np.int64) for name in ENTITIES}
        # 1 where a row has had an event no read logs (expiry.READ_TTL_MS's entities only).
        self.real = {name: np.zeros(0, dtype=np.uint8) for name in expiry.READ_TTL_MS}
        self.catalog = CatalogState()
        self.graph = EntityGraph()
        self.watermark = 0  # the store's clock: the newest event time applied (ms)
        self.tables: list[Table] = []
        self.reads: dict[str, FeatureRead] = {}
        self._updates: dict[str, list[_Update]] = {}
        self._plans = PlanCache(plan_cache)
        self._product_keys: np.ndarray | None = None
        self._compile()

    # ------------------------------------------------------------------ layout

    def _compile(self) -> None:
        windows: dict[tuple, WindowTable] = {}
        distinct: dict[tuple[str, str], DistinctTable] = {}
        columns: dict[tuple, int] = {}

        def window_columns(f: Feature, n: int) -> tuple[tuple, int]:
            key = (f.entity, f.window, f.bucketing)  # one table per entity, window and bucketing
            start = columns.get(key, 0)
            columns[key] = start + n
            return key, start

        plan: list[tuple[Feature, tuple, int]] = []
        for f in self.features.values():
            if f.aggregation in ("count", "sum", "rate", "mean", "share"):
                n = {"rate": 2, "mean": 2, "share": CATEGORY_SLOTS}.get(f.aggregation, 1)
                plan.append((f, *window_columns(f, n)))
        for key, n in columns.items():
            bucket_ms, buckets = key[2]
            windows[key] = WindowTable(key[0], key[1], bucket_ms, buckets, n)
        for f, key, start in plan:
            table = windows[key]
            if f.aggregation == "count":
                self._on(f.sources, _Update(table, f.entity, "window", start), f.weights)
                self.reads[f.name] = FeatureRead(f, table, start)
            elif f.aggregation == "sum":
                self._on(f.sources, _Update(table, f.entity, "window", start, field=f.field))
                self.reads[f.name] = FeatureRead(f, table, start)
            elif f.aggregation == "mean":
                self._on(f.sources, _Update(table, f.entity, "window", start, field=f.field))
                self._on(f.sources, _Update(table, f.entity, "window", start + 1, field=f.field, weight=0.0))
                self.reads[f.name] = FeatureRead(f, table, start, start + 1)
            elif f.aggregation == "rate":
                self._on(f.sources, _Update(table, f.entity, "window", start))
                self._on(f.denominator, _Update(table, f.entity, "window", start + 1))
                self.reads[f.name] = FeatureRead(f, table, start, start + 1)
            else:  # share
                self._on(f.sources, _Update(table, f.entity, "share", start), f.weights)
                self.reads[f.name] = FeatureRead(f, table, start)
        for f in self.features.values():
            if f.aggregation == "distinct":
                key = (f.entity, f.field)
                if key not in distinct:
                    distinct[key] = DistinctTable(f.entity, f.field)
                    self._on(f.sources, _Update(distinct[key], f.entity, "distinct", field=f.field))
                self.reads[f.name] = FeatureRead(f, distinct[key])
            elif f.aggregation == "last":
                table = LastTable(f.entity)
                self._on(f.sources, _Update(table, f.entity, "last", field=f.field))
                self.reads[f.name] = FeatureRead(f, table)
            elif f.aggregation == "sequence":
                table = SequenceTable(f.entity, f.length)
                self._on(f.sources, _Update(table, f.entity, "sequence", field=f.field))
                self.reads[f.name] = FeatureRead(f, table)
            elif f.aggregation in ("span", "since", "age"):
                table = SpanTable(f.entity)
                self._on(f.sources, _Update(table, f.entity, "span"))
                self.reads[f.name] = FeatureRead(f, table)
            elif f.aggregation in LIFETIME:
                table = LifetimeTable(f.entity, f.aggregation)
                self._on(f.sources, _Update(table, f.entity, f.aggregation, field=f.field))
                self.reads[f.name] = FeatureRead(f, table)
        seen: dict[int, Table] = {}
        for read in self.reads.values():
            seen.setdefault(id(read.table), read.table)
        self.tables = list(seen.values())

    def _on(self, sources: Iterable[str], update: _Update, weights: dict[str, float] | None = None) -> None:
        for source in sources:
            weight = (weights or {}).get(source, 1.0) if update.weight else 0.0
            self._updates.setdefault(source, []).append(
                _Update(update.table, update.entity, update.kind, update.column, weight, update.field))

    # ------------------------------------------------------------------ writes

    def apply(self, records: list[dict]) -> None:
        """Apply a batch of valid records (the watermark moves to the newest first, so a late
        event lands only where its window still holds it). Catalog, price and stock events
        take effect first, in order; then each update runs over all events of its type at once.
        Every table kernel gives the same result whatever the order within a batch, so the
        offline join, which batches differently, computes the same values."""
        if not records:
            return
        newest = max(r["timestamp"] for r in records)
        if newest > self.watermark:
            self.watermark = newest
        entities = self.entities
        catalog = self.catalog
        by_kind: dict[str, list[dict]] = {}
        for record in records:
            kind = record["event_type"]
            group = by_kind.get(kind)
            if group is None:
                group = by_kind[kind] = []
            group.append(record)
            if kind in CATALOG_EVENTS:
                catalog.apply(record)
        if "order" in by_kind or "chargeback" in by_kind:
            self.graph.apply(by_kind.get("order", []), by_kind.get("chargeback", []), self.watermark)
        for kind, group in by_kind.items():
            updates = self._updates.get(kind)
            if not updates:
                continue
            stamps = [r["timestamp"] for r in group]
            real = kind not in expiry.READ_EVENTS
            # Keys and rows of each entity, found once per event type and shared by its updates.
            located: dict[str, tuple[list[int], list[int], list[int]]] = {}
            for u in updates:
                where = located.get(u.entity)
                if where is None:
                    keys = list(map(ENTITY_KEY[u.entity], group))
                    picked = [i for i, key in enumerate(keys) if key]
                    where = located[u.entity] = (picked, entities[u.entity].rows_for([keys[i] for i in picked]),
                                                 [stamps[i] for i in picked])
                    if real and u.entity in self.real and picked:
                        self._mark_real(u.entity, where[1])
                picked, rows, times = where
                if not picked:
                    continue
                if u.kind == "window" and u.field is None:
                    u.table.add_many(rows, times, u.column, u.weight)
                    continue
                if u.kind == "span":
                    u.table.add_many(rows, times)
                    continue
                if u.kind in ("days", "first_day", "last_day"):
                    u.table.add_many(rows, times, [0.0] * len(rows))
                    continue
                if u.kind == "share":
                    slots = [catalog.category_slot(group[i]["payload"].get("product_id") or "") for i in picked]
                    keep = [j for j, slot in enumerate(slots) if slot is not None]
                    if keep:
                        u.table.add_many([rows[j] for j in keep], [times[j] for j in keep],
                                         [u.column + slots[j] for j in keep], u.weight)
                    continue
                name = u.field
                values = [field_value(group[i], name) for i in picked]
                keep = [j for j, v in enumerate(values) if v is not None and v != ""]
                if not keep:
                    continue
                if len(keep) < len(values):
                    kept_rows, kept_times, values = [rows[j] for j in keep], [times[j] for j in keep], \
                        [values[j] for j in keep]
                else:
                    kept_rows, kept_times = rows, times
                if u.kind == "window":
                    # weight 0 marks a mean's count column: count 1 per valued event
                    u.table.add_many(kept_rows, kept_times, u.column, values if u.weight else 1.0)
                elif u.kind == "distinct":
                    u.table.add_many(kept_rows, kept_times, [str(v) for v in values])
                elif u.kind == "sequence":
                    u.table.add_many(kept_rows, kept_times, entities["product"].rows_for(values))
                else:  # last, total
                    u.table.add_many(kept_rows, kept_times, [float(v) for v in values])
        self._note_seen()
        self._flush()

    def _mark_real(self, entity: str, rows: list[int]) -> None:
        flags = self.real[entity] = expiry.grown(self.real[entity], len(self.entities[entity]))
        flags[np.asarray(rows, dtype=np.int64)] = 1

    def _note_seen(self) -> None:
        """Advance last_seen from every table's buffered rows (before they are flushed)."""
        for entity in self.real:  # rows only reads created are unmarked, but present
            self.real[entity] = expiry.grown(self.real[entity], len(self.entities[entity]))
        for table in self.tables:
            rows = table.pending_rows
            if not rows:
                continue
            seen = self.last_seen[table.entity]
            size = len(self.entities[table.entity])
            if seen.shape[0] < size:
                grown = np.zeros(max(size, 2 * seen.shape[0], 64), dtype=np.int64)
                grown[: seen.shape[0]] = seen
                seen = self.last_seen[table.entity] = grown
            np.maximum.at(seen, np.asarray(rows, dtype=np.int64), np.asarray(table.pending_stamps, dtype=np.int64))

    def rows(self, entity: str, keys: list[str], as_of: int) -> np.ndarray:
        """Rows of `keys`; -1 for keys never seen or forgotten (expiry.forgotten at as_of)."""
        rows = self.entities[entity].lookup(keys)
        if len(rows) and expiry.expires(entity) and len(self.last_seen[entity]):
            # an unknown key (-1) reads row 0's state here, and stays -1 whatever it says
            stale = expiry.forgotten(entity, np.maximum(rows, 0), self.last_seen[entity], self.real.get(entity), as_of)
            rows[stale] = -1
        return rows

    def evict(self, min_share: float = 0.25) -> dict[str, int]:
        """Reclaim the rows of entities past their TTL at the store's clock, for each entity
        type where at least `min_share` of the rows are stale. Returns rows dropped by type."""
        dropped = {}
        for entity in ENTITY_TTL_MS:
            index = self.entities[entity]
            if not expiry.expires(entity) or not len(index):
                continue
            seen = self.last_seen[entity][: len(index)]
            real = self.real.get(entity)
            keep = ~expiry.forgotten(entity, np.arange(len(index)), seen, real, self.watermark)
            stale = int(len(keep) - keep.sum())
            if stale == 0 or stale < min_share * len(keep):
                continue
            index.keys = [key for key, kept in zip(index.keys, keep.tolist()) if kept]
            index.rows = {key: row for row, key in enumerate(index.keys)}
            self.last_seen[entity] = seen[keep].copy()
            if real is not None:
                self.real[entity] = expiry.grown(real, len(keep))[: len(keep)][keep].copy()
            for table in self.tables:
                if table.entity == entity:
                    table.set_arrays({name: array[: len(keep)][keep].copy() for name, array in table.arrays().items()})
            dropped[entity] = stale
        if dropped:
            self._plans.drop_stale()
        return dropped

    def _flush(self) -> None:
        """Run the buffered updates of every table (in place, by the Numba kernels)."""
        replaced = False
        for table in self.tables:
            replaced |= table.ensure(len(self.entities[table.entity]))
            table.flush(self.watermark)
        if replaced:  # plans over the old arrays would keep them alive
            self._plans.drop_stale()

    def apply_catalog(self, records: list[dict]) -> None:
        """Only what a batch does to the state held in process, the catalog and the fraud
        network (a replica catching up with a shared store that already holds the batch's
        feature updates)."""
        for record in records:
            if record["event_type"] in CATALOG_EVENTS:
                self.catalog.apply(record)
        if self.graph.shared:  # the shared store holds these already
            return
        orders = [r for r in records if r["event_type"] == "order"]
        chargebacks = [r for r in records if r["event_type"] == "chargeback"]
        if orders or chargebacks:
            self.graph.apply(orders, chargebacks, max(self.watermark, max(r["timestamp"] for r in records)))

    def load_catalog(self, products: Iterable[dict]) -> None:
        for product in products:
            self.catalog.upsert(product)
            self.entities["product"].row(product["product_id"])

    # ------------------------------------------------------------------ reads

    def feature_names(self, entity: str) -> list[str]:
        return [name for name, f in self.features.items() if f.entity == entity]

    def check_names(self, entity: str, names: list[str]) -> list[Feature]:
        """The features asked for, all of `entity` (KeyError/ValueError name the culprit)."""
        out = []
        for name in names:
            f = self.features.get(name)
            if f is None:
                raise KeyError(name)
            if f.entity != entity:
                raise ValueError(f"feature {name!r} describes a {f.entity}, not a {entity}")
            out.append(f)
        return out

    def _plan(self, entity: str, names: tuple[str, ...]):
        """(plan, columns, layout) for `names` in the caller's order (plans.PlanCache)."""
        def build(order: tuple[str, ...]):
            plan, layout = self._build_plan(list(order), lambda name: self.reads[name].table)
            return plan, layout, [self.reads[name].table for name in order]
        return self._plans.get(entity, names, build)

    def _build_plan(self, names: list[str], table_of: Callable[[str], Table]):
        """A native gather plan over the tables `table_of` gives for each feature, and the
        (name, first column, width) layout of its output."""
        scalar = [n for n in names if self.features[n].aggregation != "sequence"]
        width = sum(self.features[n].width for n in scalar)
        plan = _native.FeatureGatherPlan(max(width, 1))
        layout, col = [], 0
        for name in scalar:
            read = self.reads[name]
            f, table = read.feature, table_of(name)
            if f.aggregation in ("count", "sum"):
                plan.add_window(0, col, 1, f.default, table.values, table.epoch, table.bucket_ms, read.column, -1)
            elif f.aggregation in ("mean", "rate"):
                plan.add_window(1, col, 1, f.default, table.values, table.epoch, table.bucket_ms, read.column,
                                read.denominator_column)
            elif f.aggregation == "share":
                plan.add_window(2, col, CATEGORY_SLOTS, f.default, table.values, table.epoch, table.bucket_ms,
                                read.column, -1)
            elif f.aggregation == "distinct":
                plan.add_distinct(col, f.default, table.hashes, table.last_seen, f.window_ms)
            elif f.aggregation == "last" or f.aggregation in LIFETIME:
                plan.add_last(col, f.default, table.value, table.stamps)
            elif f.aggregation in ("span", "since", "age"):
                plan.add_span(col, f.default, table.first, table.last, ("span", "since", "age").index(f.aggregation))
            layout.append((name, col, f.width))
            col += f.width
        return plan, layout

    def gather(self, entity: str, keys: list[str], names: list[str], as_of: int | None = None):
        """Scalar features of `keys` as one float32 matrix [len(keys), width] with a missing
        mask of the same shape, and the (name, first column, width) layout. Sequences are
        read with `sequences`."""
        plan, columns, layout = self._plan(entity, tuple(names))
        as_of = self.watermark if as_of is None else as_of
        values, missing = plan.gather(self.rows(entity, keys, as_of), as_of)
        if columns is not None:  # the canonical plan's columns in the order asked
            values, missing = values[:, columns], missing[:, columns]
        return values, missing, layout

    def read(self, entity: str, keys: list[str], names: list[str], as_of: int | None = None) -> FeatureBlock:
        """Every named feature of `keys` (validated names of `entity`)."""
        scalar = [n for n in names if self.features[n].aggregation != "sequence"]
        values, missing, layout = self.gather(entity, keys, scalar, as_of) if scalar else (
            np.zeros((len(keys), 0), np.float32), np.zeros((len(keys), 0), np.uint8), [])
        sequences = {n: self.sequences_flat(entity, keys, n, as_of) for n in names
                     if self.features[n].aggregation == "sequence"}
        return FeatureBlock(values, missing, layout, sequences)

    def sequence_items(self, entity: str, keys: list[str], name: str, as_of: int | None = None,
                       k: int | None = None) -> np.ndarray:
        """Newest first: product rows (int32, -1 padded) of a sequence feature, a row per key."""
        table = self.reads[name].table
        as_of = self.watermark if as_of is None else as_of
        return _native.gather_sequences(table.items, table.stamps, table.head, self.rows(entity, keys, as_of), as_of,
                                        k or table.length)

    def sequences_flat(self, entity: str, keys: list[str], name: str, as_of: int | None = None,
                       k: int | None = None) -> tuple[list[str], np.ndarray]:
        """The product ids of every key's sequence one after the other, and how many each has."""
        items = self.sequence_items(entity, keys, name, as_of, k)
        present = items >= 0
        return self.product_keys()[items[present]].tolist(), present.sum(axis=1)

    def sequences(self, entity: str, keys: list[str], name: str, as_of: int | None = None,
                  k: int | None = None) -> list[list[str]]:
        """Newest first: the product ids of a sequence feature for each key."""
        flat, counts = self.sequences_flat(entity, keys, name, as_of, k)
        out, start = [], 0
        for count in counts.tolist():
            out.append(flat[start:start + count])
            start += count
        return out

    def product_keys(self) -> np.ndarray:
        """Product ids by row as an object array (cached until a product is added)."""
        keys = self.entities["product"].keys
        if self._product_keys is None or len(self._product_keys) != len(keys):
            self._product_keys = np.array(keys, dtype=object)
        return self._product_keys

    def nbytes(self) -> int:
        return sum(t.nbytes() for t in self.tables)
