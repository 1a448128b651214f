"""Tables of the Redis store's answers: the hashes a read fetched, by requested key, turned
into tables of the embedded layout (row r = the r-th key), so the same native plans gather
them."""
from __future__ import annotations

import numpy as np

from .tables import DistinctTable, LastTable, SpanTable, Table, WindowTable


def materialize(table: Table, hashes: list[dict]) -> Table:
    """A table of len(hashes) rows (row r = the r-th requested key) from Redis hashes."""
    n = len(hashes)
    if isinstance(table, WindowTable):
        copy = WindowTable(table.entity, table.window, table.bucket_ms, table.buckets, table.columns)
        values = np.zeros((n, table.buckets, table.columns))
        epoch = np.full((n, table.buckets), -1, dtype=np.int64)
        layout = np.dtype([("slot", "<i8"), ("bucket", "<i8"), ("values", "<f8", (table.columns,))])
        sizes = [len(h) for h in hashes]
        if sum(sizes):
            slots = np.frombuffer(b"".join(b"".join(h) for h in hashes), dtype=layout)
            owner = np.repeat(np.arange(n), sizes)
            epoch[owner, slots["slot"]] = slots["bucket"]
            values[owner, slots["slot"]] = slots["values"]
        copy.set_arrays({"values": values, "epoch": epoch})
    elif isinstance(table, DistinctTable):
        copy = DistinctTable(table.entity, table.field)
        hashed = np.zeros((n, table.SLOTS), dtype=np.uint64)
        seen = np.full((n, table.SLOTS), -1, dtype=np.int64)
        for r, h in enumerate(hashes):
            for field, value in h.items():
                slot = int(field[1:])
                if field[:1] == b"h":
                    hashed[r, slot] = int(value)
                else:
                    seen[r, slot] = int(value)
        copy.set_arrays({"hashes": hashed, "last_seen": seen})
    elif isinstance(table, LastTable):
        copy = LastTable(table.entity)
        value = np.zeros(n)
        stamps = np.full(n, -1, dtype=np.int64)
        for r, h in enumerate(hashes):
            if b"t" in h:
                value[r], stamps[r] = float(h[b"v"]), int(h[b"t"])
        copy.set_arrays({"value": value, "stamps": stamps})
    elif isinstance(table, SpanTable):
        copy = SpanTable(table.entity)
        first = np.full(n, -1, dtype=np.int64)
        last = np.full(n, -1, dtype=np.int64)
        for r, h in enumerate(hashes):
            if b"f" in h:
                first[r], last[r] = int(h[b"f"]), int(h[b"l"])
        copy.set_arrays({"first": first, "last": last})
    else:
        raise TypeError(type(table).__name__)
    return copy
