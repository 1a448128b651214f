"""The online store's tables: numpy arrays indexed by entity, updated in place by the Numba
kernels (hanzo.kernels.windows) and read by the native gather (hanzo._native). Each table
buffers a batch's updates as plain lists, then applies them in one kernel call."""
from __future__ import annotations

import hashlib

import numpy as np

from hanzo.kernels import windows as k

DAY_MS = 86_400_000


def value_hash(value: str) -> int:
    """A stable, non-zero 64-bit hash of a string value (0 marks an empty slot)."""
    h = int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "little")
    return h or 1


class EntityIndex:
    """Entity keys (user ids, product ids ...) to dense row numbers, in order of first sight."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.rows: dict[str, int] = {}
        self.keys: list[str] = []

    def __len__(self) -> int:
        return len(self.keys)

    def row(self, key: str) -> int:
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = len(self.keys)
            self.keys.append(key)
        return row

    def rows_for(self, keys: list[str]) -> list[int]:
        """Rows of `keys`, adding the keys never seen."""
        rows, known = self.rows, self.keys
        out = []
        append = out.append
        for key in keys:
            row = rows.get(key)
            if row is None:
                row = rows[key] = len(known)
                known.append(key)
            append(row)
        return out

    def lookup(self, keys: list[str]) -> np.ndarray:
        """Rows of `keys`, -1 where the store has never seen the key."""
        get = self.rows.get
        return np.fromiter((get(key, -1) for key in keys), dtype=np.int64, count=len(keys))


def _grow(array: np.ndarray, rows: int, fill) -> np.ndarray:
    grown = np.full((rows,) + array.shape[1:], fill, dtype=array.dtype)
    grown[: array.shape[0]] = array
    return grown


class Table:
    """Rows grow with the entity index; `generation` changes whenever arrays are replaced.

    Updates are buffered per batch as columns of plain lists (rows, stamps, and the table's
    own BUFFERED ones), then applied in one kernel call (`flush`), or handed whole to another
    backend (`take`)."""

    entity: str
    generation = 0
    BUFFERED: tuple[str, ...] = ()

    def _start_buffer(self) -> None:
        self._pending: dict[str, list] = {name: [] for name in ("rows", "stamps") + self.BUFFERED}

    def _add(self, rows: list[int], stamps: list[int], **columns: list) -> None:
        pending = self._pending
        pending["rows"].extend(rows)
        pending["stamps"].extend(stamps)
        for name, values in columns.items():
            pending[name].extend(values)

    @property
    def pending_rows(self) -> list[int]:
        return self._pending["rows"]

    @property
    def pending_stamps(self) -> list[int]:
        return self._pending["stamps"]

    def take(self) -> dict[str, list]:
        """The buffered updates, by column; the buffer starts empty again."""
        taken = self._pending
        self._start_buffer()
        return taken

    def flush(self, watermark: int) -> None:
        if self._pending["rows"]:
            self._apply(self.take(), watermark)

    def _apply(self, batch: dict[str, list], watermark: int) -> None:
        raise NotImplementedError

    def arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        for name, value in arrays.items():
            setattr(self, name, value)
        self.generation += 1

    @property
    def capacity(self) -> int:
        return next(iter(self.arrays().values())).shape[0]

    def ensure(self, rows: int) -> bool:
        """Room for `rows` rows; True when that replaced the arrays."""
        if rows <= self.capacity:
            return False
        target = max(rows, self.capacity * 2, 64)
        self.set_arrays({name: _grow(a, target, self.FILL[name]) for name, a in self.arrays().items()})
        return True

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays().values())


def _i64(values: list) -> np.ndarray:
    return np.array(values, np.int64)


class WindowTable(Table):
    FILL = {"values": 0.0, "epoch": -1}
    BUFFERED = ("column", "amount")

    def __init__(self, entity: str, window: str, bucket_ms: int, buckets: int, columns: int) -> None:
        self.entity, self.window = entity, window
        self.bucket_ms, self.buckets, self.columns = bucket_ms, buckets, columns
        self.values = np.zeros((0, buckets, columns))
        self.epoch = np.full((0, buckets), -1, dtype=np.int64)
        self._start_buffer()

    def arrays(self) -> dict[str, np.ndarray]:
        return {"values": self.values, "epoch": self.epoch}

    def add_many(self, rows: list[int], stamps: list[int], columns, amounts) -> None:
        """`columns` and `amounts` are lists as long as `rows`, or one value for all."""
        n = len(rows)
        self._add(rows, stamps, column=columns if isinstance(columns, list) else [columns] * n,
                  amount=amounts if isinstance(amounts, list) else [amounts] * n)

    def _apply(self, batch: dict[str, list], watermark: int) -> None:
        floor_bucket = watermark // self.bucket_ms - self.buckets
        k.window_add(self.values, self.epoch, _i64(batch["rows"]), _i64(batch["stamps"]), _i64(batch["column"]),
                     np.array(batch["amount"], np.float64), self.bucket_ms, floor_bucket)


class SequenceTable(Table):
    FILL = {"items": -1, "stamps": 0, "head": 0}
    BUFFERED = ("item",)

    def __init__(self, entity: str, length: int) -> None:
        self.entity, self.length = entity, length
        self.items = np.full((0, length), -1, dtype=np.int32)
        self.stamps = np.zeros((0, length), dtype=np.int64)
        self.head = np.zeros(0, dtype=np.int64)
        self._start_buffer()

    def arrays(self) -> dict[str, np.ndarray]:
        return {"items": self.items, "stamps": self.stamps, "head": self.head}

    def add_many(self, rows: list[int], stamps: list[int], items: list[int]) -> None:
        self._add(rows, stamps, item=items)

    def _apply(self, batch: dict[str, list], watermark: int) -> None:
        k.sequence_push(self.items, self.stamps, self.head, _i64(batch["rows"]), _i64(batch["stamps"]),
                        np.array(batch["item"], np.int32))


class DistinctTable(Table):
    FILL = {"hashes": 0, "last_seen": -1}
    SLOTS = 16  # distinct values held per entity: counts are exact up to 16 in a window
    BUFFERED = ("hash",)

    def __init__(self, entity: str, field: str) -> None:
        self.entity, self.field = entity, field
        self.hashes = np.zeros((0, self.SLOTS), dtype=np.uint64)
        self.last_seen = np.full((0, self.SLOTS), -1, dtype=np.int64)
        self._start_buffer()

    def arrays(self) -> dict[str, np.ndarray]:
        return {"hashes": self.hashes, "last_seen": self.last_seen}

    def add_many(self, rows: list[int], stamps: list[int], values: list[str]) -> None:
        self._add(rows, stamps, hash=list(map(value_hash, values)))

    def _apply(self, batch: dict[str, list], watermark: int) -> None:
        k.distinct_touch(self.hashes, self.last_seen, _i64(batch["rows"]), _i64(batch["stamps"]),
                         np.array(batch["hash"], np.uint64))


class LastTable(Table):
    FILL = {"value": 0.0, "stamps": -1}
    BUFFERED = ("value",)

    def __init__(self, entity: str) -> None:
        self.entity = entity
        self.value = np.zeros(0)
        self.stamps = np.full(0, -1, dtype=np.int64)
        self._start_buffer()

    def arrays(self) -> dict[str, np.ndarray]:
        return {"value": self.value, "stamps": self.stamps}

    def add_many(self, rows: list[int], stamps: list[int], values: list[float]) -> None:
        self._add(rows, stamps, value=values)

    def _apply(self, batch: dict[str, list], watermark: int) -> None:
        k.last_set(self.value, self.stamps, _i64(batch["rows"]), _i64(batch["stamps"]),
                   np.array(batch["value"], np.float64))


class SpanTable(Table):
    FILL = {"first": -1, "last": -1}

    def __init__(self, entity: str) -> None:
        self.entity = entity
        self.first = np.full(0, -1, dtype=np.int64)
        self.last = np.full(0, -1, dtype=np.int64)
        self._start_buffer()

    def arrays(self) -> dict[str, np.ndarray]:
        return {"first": self.first, "last": self.last}

    def add_many(self, rows: list[int], stamps: list[int]) -> None:
        self._add(rows, stamps)

    def _apply(self, batch: dict[str, list], watermark: int) -> None:
        k.span_extend(self.first, self.last, _i64(batch["rows"]), _i64(batch["stamps"]))


class LifetimeTable(LastTable):
    """A number over the entity's whole life (value), its newest event's time (stamps) and, for
    days, which recent days were counted (mask): a few numbers per entity however long it stays,
    read as a last value is."""

    FILL = {"value": 0.0, "stamps": -1, "mask": 0}
    BUFFERED = ("value",)

    def __init__(self, entity: str, aggregation: str) -> None:
        super().__init__(entity)
        # "total": a field's sum; "days": days with an event; "first_day" / "last_day": their day
        self.aggregation = aggregation
        self.mask = np.zeros(0, dtype=np.int64)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"value": self.value, "stamps": self.stamps, "mask": self.mask}

    def _apply(self, batch: dict[str, list], watermark: int) -> None:
        rows, stamps = _i64(batch["rows"]), _i64(batch["stamps"])
        if self.aggregation == "days":
            k.days_add(self.value, self.stamps, self.mask, rows, stamps, DAY_MS)
        elif self.aggregation == "total":
            k.total_add(self.value, self.stamps, rows, stamps, np.array(batch["value"], np.float64))
        else:
            k.day_bound(self.value, self.stamps, rows, stamps, DAY_MS, self.aggregation == "first_day")
