"""Event ids already accepted, remembered for a horizon of event time: a 64-bit hash of each
id in an open-addressing table (Numba), about 32 bytes an id at the table's load."""
from __future__ import annotations

import numba as nb
import numpy as np

from .tables import value_hash


def id_hashes(event_ids: list[str]) -> np.ndarray:
    return np.fromiter(map(value_hash, event_ids), dtype=np.uint64, count=len(event_ids))


@nb.njit(nogil=True, cache=True)
def _insert(keys, stamps, hashes, ts, floor, is_new):
    """Insert each hash unless held and still within the horizon (stamp > floor); returns the
    number of slots newly occupied."""
    mask = keys.shape[0] - 1
    occupied = 0
    for i in range(hashes.shape[0]):
        h = hashes[i]
        slot = h & mask
        while True:
            held = keys[slot]
            if held == 0:
                keys[slot] = h
                stamps[slot] = ts[i]
                is_new[i] = True
                occupied += 1
                break
            if held == h:
                if stamps[slot] <= floor:  # remembered past its horizon: new again
                    stamps[slot] = ts[i]
                    is_new[i] = True
                else:
                    is_new[i] = False
                    if ts[i] > stamps[slot]:
                        stamps[slot] = ts[i]
                break
            slot = (slot + 1) & mask
    return occupied


@nb.njit(nogil=True, cache=True)
def _forget(keys, stamps, hashes, floor):
    mask = keys.shape[0] - 1
    for i in range(hashes.shape[0]):
        h = hashes[i]
        slot = h & mask
        while keys[slot] != 0:
            if keys[slot] == h:
                stamps[slot] = floor
                break
            slot = (slot + 1) & mask


class EventsInFlight(Exception):
    """Ids of a batch that another batch, not yet durable, holds (in this process, or in
    Redis mode on any replica): neither new nor a duplicate until that batch is logged or
    given up, so the whole batch is refused for the client to send again."""

    def __init__(self, indexes: list[int]) -> None:
        super().__init__(f"{len(indexes)} events in flight")
        self.indexes = indexes


class DedupIndex:
    def __init__(self, horizon_ms: int, capacity: int = 1 << 16) -> None:
        self.horizon_ms = horizon_ms
        capacity = 1 << max(int(capacity - 1).bit_length(), 4)
        self.keys = np.zeros(capacity, dtype=np.uint64)
        self.stamps = np.zeros(capacity, dtype=np.int64)
        self.occupied = 0

    def check_and_add(self, hashes: np.ndarray, ts: np.ndarray, watermark: int) -> np.ndarray:
        """True where the id is new (and is now remembered), False for a duplicate."""
        if (self.occupied + len(hashes)) * 10 > self.keys.shape[0] * 6:
            self._rehash(watermark, len(hashes))
        is_new = np.zeros(len(hashes), dtype=np.bool_)
        self.occupied += _insert(self.keys, self.stamps, hashes, ts, watermark - self.horizon_ms, is_new)
        return is_new

    def forget(self, hashes: np.ndarray, watermark: int) -> None:
        """Undo check_and_add for ids whose batch did not make it into the log."""
        _forget(self.keys, self.stamps, hashes, watermark - self.horizon_ms - 1)

    def _rehash(self, watermark: int, incoming: int) -> None:
        floor = watermark - self.horizon_ms
        live = (self.keys != 0) & (self.stamps > floor)
        keys, stamps = self.keys[live], self.stamps[live]
        capacity = self.keys.shape[0]
        while (len(keys) + incoming) * 10 > capacity * 5:
            capacity *= 2
        self.keys = np.zeros(capacity, dtype=np.uint64)
        self.stamps = np.zeros(capacity, dtype=np.int64)
        is_new = np.zeros(len(keys), dtype=np.bool_)
        self.occupied = _insert(self.keys, self.stamps, keys, stamps, np.iinfo(np.int64).min, is_new)

    def state(self) -> dict[str, np.ndarray]:
        return {"keys": self.keys, "stamps": self.stamps}

    def restore(self, state: dict[str, np.ndarray]) -> None:
        self.keys, self.stamps = state["keys"], state["stamps"]
        self.occupied = int((self.keys != 0).sum())

    def nbytes(self) -> int:
        return self.keys.nbytes + self.stamps.nbytes
