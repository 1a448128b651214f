"""The online feature store, embedded: every feature of definitions.FEATURES kept in tables
updated in place per batch of events (O(1) per event), read for any list of entities in one
native call. The same class, fed the log in event-time order, is the offline join."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable


from hanzo import _native

from .catalog import CatalogState
from .definitions import CATEGORY_SLOTS, ENTITIES, FEATURES, WINDOWS, Feature
from .tables import DistinctTable, EntityIndex, LastTable, SequenceTable, SpanTable, Table, WindowTable

# How each entity is found in an event.
ENTITY_KEY: dict[str, Callable[[dict], Any]] = {
    "user": lambda r: r.get("user_id"),
    "session": lambda r: r.get("session_id") or None,
    "product": lambda r: r["payload"].get("product_id"),
    "card": lambda r: r["payload"].get("card_id"),
    "device": lambda r: r["payload"].get("device_id") or (r.get("context") or {}).get("device"),
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
class FeatureRead:
    """Where a feature's value is read from."""
    feature: Feature
    table: Table
    column: int = 0
    denominator_column: int = -1


class FeatureStore:
    def __init__(self, features: Iterable[Feature] = FEATURES) -> None:
        self.features = {f.name: f for f in features}
        self.entities = {name: EntityIndex(name) for name in ENTITIES}
        self.catalog = CatalogState()
        self.watermark = 0  # the store's clock: the newest event time applied (ms)
        self.tables: list[Table] = []
        self.reads: dict[str, FeatureRead] = {}
        self._updates: dict[str, list[_Update]] = {}
        self._plans: dict[tuple, tuple[int, Any, list]] = {}
        self._compile()

    # ------------------------------------------------------------------ layout

    def _compile(self) -> None:
        windows: dict[tuple[str, str], WindowTable] = {}
        distinct: dict[tuple[str, str], DistinctTable] = {}
        columns: dict[tuple[str, str], int] = {}

        def window_columns(entity: str, window: str, n: int) -> tuple[WindowTable, int]:
            key = (entity, window)
            start = columns.get(key, 0)
            columns[key] = start + n
            return key, start

        plan: list[tuple[Feature, tuple, int]] = []
        for f in self.features.values():
            if f.aggregation in ("count", "sum", "rate", "mean", "share"):
                n = {"rate": 2, "mean": 2, "share": CATEGORY_SLOTS}.get(f.aggregation, 1)
                plan.append((f, *window_columns(f.entity, f.window, n)))
        for key, n in columns.items():
            bucket_ms, buckets = WINDOWS[key[1]]
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
            elif f.aggregation == "span":
                table = SpanTable(f.entity)
                self._on(f.sources, _Update(table, f.entity, "span"))
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
        event lands only where its window still holds it)."""
        if not records:
            return
        newest = max(r["timestamp"] for r in records)
        if newest > self.watermark:
            self.watermark = newest
        entities = self.entities
        catalog = self.catalog
        products = entities["product"]
        for record in records:
            kind = record["event_type"]
            if kind in ("catalog_update", "price_change", "stock_update", "purchase"):
                catalog.apply(record)
            updates = self._updates.get(kind)
            if not updates:
                continue
            ts = record["timestamp"]
            for u in updates:
                key = ENTITY_KEY[u.entity](record)
                if not key:
                    continue
                if u.kind == "window":
                    if u.field is None:
                        u.table.add(entities[u.entity].row(key), ts, u.column, u.weight)
                        continue
                    value = field_value(record, u.field)
                    if value is not None:
                        # weight 0 marks a mean's count column: count 1 per valued event
                        u.table.add(entities[u.entity].row(key), ts, u.column, value if u.weight else 1.0)
                elif u.kind == "distinct":
                    value = field_value(record, u.field)
                    if value:
                        u.table.add(entities[u.entity].row(key), ts, str(value))
                elif u.kind == "sequence":
                    value = field_value(record, u.field)
                    if value:
                        u.table.add(entities[u.entity].row(key), ts, products.row(value))
                elif u.kind == "last":
                    value = field_value(record, u.field)
                    if value is not None:
                        u.table.add(entities[u.entity].row(key), ts, float(value))
                elif u.kind == "span":
                    u.table.add(entities[u.entity].row(key), ts)
                else:  # share of root categories
                    product = record["payload"].get("product_id")
                    slot = catalog.category_slot(product) if product else None
                    if slot is not None:
                        u.table.add(entities[u.entity].row(key), ts, u.column + slot, u.weight)
        for table in self.tables:
            table.ensure(len(entities[table.entity]))
            table.flush(self.watermark)

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
        generation = sum(self.reads[n].table.generation for n in names)
        cached = self._plans.get((entity, names))
        if cached and cached[0] == generation:
            return cached[1], cached[2]
        scalar = [n for n in names if self.features[n].aggregation != "sequence"]
        width = sum(self.features[n].width for n in scalar)
        plan = _native.FeatureGatherPlan(max(width, 1))
        layout, col = [], 0
        for name in scalar:
            read = self.reads[name]
            f, table = read.feature, read.table
            if f.aggregation in ("count", "sum"):
                plan.add_window(0, col, 1, f.default, table.values, table.epoch, table.bucket_ms, read.column, -1)
            elif f.aggregation in ("mean", "rate"):
                plan.add_window(1, col, 1, f.default, table.values, table.epoch, table.bucket_ms, read.column,
                                read.denominator_column)
            elif f.aggregation == "share":
                plan.add_window(2, col, CATEGORY_SLOTS, f.default, table.values, table.epoch, table.bucket_ms,
                                read.column, -1)
            elif f.aggregation == "distinct":
                plan.add_distinct(col, f.default, table.hashes, table.last_seen, WINDOWS[f.window][0] *
                                  WINDOWS[f.window][1])
            elif f.aggregation == "last":
                plan.add_last(col, f.default, table.value, table.stamps)
            elif f.aggregation == "span":
                plan.add_span(col, f.default, table.first, table.last)
            layout.append((name, col, f.width))
            col += f.width
        self._plans[(entity, names)] = (generation, plan, layout)
        return plan, layout

    def gather(self, entity: str, keys: list[str], names: list[str], as_of: int | None = None):
        """Scalar features of `keys` as one float32 matrix [len(keys), width] with a missing
        mask of the same shape, and the (name, first column, width) layout. Sequences are
        read with `sequences`."""
        plan, layout = self._plan(entity, tuple(names))
        rows = self.entities[entity].lookup(keys)
        values, missing = plan.gather(rows, self.watermark if as_of is None else as_of)
        return values, missing, layout

    def sequences(self, entity: str, keys: list[str], name: str, as_of: int | None = None,
                  k: int | None = None) -> list[list[str]]:
        """Newest first: the product ids of a sequence feature for each key."""
        table = self.reads[name].table
        rows = self.entities[entity].lookup(keys)
        items = _native.gather_sequences(table.items, table.stamps, table.head, rows,
                                         self.watermark if as_of is None else as_of, k or table.length)
        product_keys = self.entities["product"].keys
        return [[product_keys[i] for i in row if i >= 0] for row in items]

    def nbytes(self) -> int:
        return sum(t.nbytes() for t in self.tables)
