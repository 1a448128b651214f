"""In-place updates of the online store's tables, O(1) per event. Layouts (shared with the
reads in cpp_ext/feature_gather.hpp):

- window table: values float64 [entities, buckets, columns], epoch int64 [entities, buckets].
  Slot s of entity e holds absolute bucket epoch[e, s] (ts // bucket_ms), s = bucket % buckets.
- sequence table: items int32 [entities, length], ts int64 [entities, length], head int64
  [entities] (count of items ever pushed; the newest sits at (head - 1) % length).
- distinct table: hashes uint64 [entities, slots] (0: empty), last_seen int64 [entities, slots].
- last table: value float64 [entities], ts int64 [entities] (-1: never set).
- span table: first int64 [entities], last int64 [entities] (-1: never set).
- lifetime tables (days, total, first_day, last_day): value float64 [entities], ts int64
  [entities] (the newest event's time, -1: never set), read as a last table is; mask int64
  [entities] (days: which of the 32 days before the newest were counted).
"""
from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(nogil=True, cache=True)
def window_add(values, epoch, entity, ts, column, amount, bucket_ms, floor_bucket):
    """values[e, bucket(ts), column] += amount for each event row, where its bucket is still
    held: newer than `floor_bucket` (the oldest bucket of the window at the store's clock) and
    not already overwritten by a later bucket in its slot."""
    n_buckets = epoch.shape[1]
    for k in range(entity.shape[0]):
        e = entity[k]
        bucket = ts[k] // bucket_ms
        if bucket <= floor_bucket:
            continue
        slot = bucket % n_buckets
        held = epoch[e, slot]
        if held < bucket:
            for c in range(values.shape[2]):
                values[e, slot, c] = 0.0
            epoch[e, slot] = bucket
        elif held > bucket:
            continue
        values[e, slot, column[k]] += amount[k]


@nb.njit(nogil=True, cache=True)
def sequence_push(items, stamps, head, entity, ts, item):
    """Append item[k] to entity[k]'s ring of the most recent items."""
    length = items.shape[1]
    for k in range(entity.shape[0]):
        e = entity[k]
        slot = head[e] % length
        items[e, slot] = item[k]
        stamps[e, slot] = ts[k]
        head[e] += 1


@nb.njit(nogil=True, cache=True)
def distinct_touch(hashes, last_seen, entity, ts, value_hash):
    """Record that entity[k] used value_hash[k] at ts[k]: refresh that value's slot, else take
    an empty slot, else evict the value seen longest ago."""
    slots = hashes.shape[1]
    for k in range(entity.shape[0]):
        e = entity[k]
        h = value_hash[k]
        match = -1
        empty = -1
        oldest = -1
        for s in range(slots):
            held = hashes[e, s]
            if held == h:
                match = s
                break
            if held == 0:
                if empty == -1:
                    empty = s
            elif oldest == -1 or last_seen[e, s] < last_seen[e, oldest]:
                oldest = s
        if match >= 0:
            if ts[k] > last_seen[e, match]:
                last_seen[e, match] = ts[k]
        else:
            target = empty if empty >= 0 else oldest
            hashes[e, target] = h
            last_seen[e, target] = ts[k]


@nb.njit(nogil=True, cache=True)
def last_set(value, stamps, entity, ts, new_value):
    """value[e] = the value of the latest event (by event time) seen for e; between events of
    the same millisecond the largest value, so the result never depends on arrival order."""
    for k in range(entity.shape[0]):
        e = entity[k]
        if ts[k] > stamps[e] or (ts[k] == stamps[e] and new_value[k] > value[e]):
            value[e] = new_value[k]
            stamps[e] = ts[k]


@nb.njit(nogil=True, cache=True)
def span_extend(first, last, entity, ts):
    """Widen [first, last] of entity[k] to include ts[k]."""
    for k in range(entity.shape[0]):
        e = entity[k]
        t = ts[k]
        if first[e] == -1 or t < first[e]:
            first[e] = t
        if t > last[e]:
            last[e] = t


@nb.njit(nogil=True, cache=True)
def total_add(value, stamps, entity, ts, amount):
    """value[e] += amount over the entity's whole life; stamps[e] its newest event."""
    for k in range(entity.shape[0]):
        e = entity[k]
        value[e] += amount[k]
        if ts[k] > stamps[e]:
            stamps[e] = ts[k]


@nb.njit(nogil=True, cache=True)
def days_add(value, stamps, mask, entity, ts, day_ms):
    """value[e] counts the days (ts // day_ms) with an event of e, in O(1) per entity: stamps[e]
    is the newest event, and bit k of mask[e] says whether the day k + 1 before the newest
    event's day was counted, so a late event up to 32 days back is counted once, whatever the
    batches (the store refuses events older than its dedup horizon)."""
    order = np.argsort(ts, kind="mergesort")
    for i in range(order.shape[0]):
        k = order[i]
        e = entity[k]
        day = ts[k] // day_ms
        if stamps[e] < 0:
            value[e] = 1.0
            mask[e] = 0
        else:
            newest = stamps[e] // day_ms
            if day > newest:
                shift = day - newest
                if shift < 32:
                    mask[e] = ((mask[e] << shift) | (1 << (shift - 1))) & 0xFFFFFFFF
                elif shift == 32:
                    mask[e] = 1 << 31
                else:
                    mask[e] = 0
                value[e] += 1.0
            elif day < newest:
                back = newest - 1 - day
                if back < 32 and (mask[e] >> back) & 1 == 0:
                    mask[e] |= 1 << back
                    value[e] += 1.0
        if ts[k] > stamps[e]:
            stamps[e] = ts[k]


@nb.njit(nogil=True, cache=True)
def day_bound(value, stamps, entity, ts, day_ms, first):
    """value[e] = the day (ts // day_ms) of e's first event (first) or latest (not first),
    exactly (a whole number, so a float32 read keeps it); stamps[e] its newest event."""
    for k in range(entity.shape[0]):
        e = entity[k]
        day = float(ts[k] // day_ms)
        if stamps[e] < 0 or (first and day < value[e]) or (not first and day > value[e]):
            value[e] = day
        if ts[k] > stamps[e]:
            stamps[e] = ts[k]


def prepare() -> None:
    """Compile every kernel for the types the store uses (before serving)."""
    i64 = np.zeros(1, np.int64)
    window_add(np.zeros((1, 2, 1)), np.full((1, 2), -1, np.int64), i64, i64, i64, np.zeros(1), 1, -1)
    sequence_push(np.zeros((1, 2), np.int32), np.zeros((1, 2), np.int64), np.zeros(1, np.int64), i64, i64,
                  np.zeros(1, np.int32))
    distinct_touch(np.zeros((1, 2), np.uint64), np.full((1, 2), -1, np.int64), i64, i64, np.ones(1, np.uint64))
    last_set(np.zeros(1), np.full(1, -1, np.int64), i64, i64, np.zeros(1))
    span_extend(np.full(1, -1, np.int64), np.full(1, -1, np.int64), i64, i64)
    total_add(np.zeros(1), np.full(1, -1, np.int64), i64, i64, np.zeros(1))
    days_add(np.zeros(1), np.full(1, -1, np.int64), np.zeros(1, np.int64), i64, i64, 86_400_000)
    day_bound(np.zeros(1), np.full(1, -1, np.int64), i64, i64, 86_400_000, True)
