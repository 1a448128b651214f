"""Triton's response cache: a model whose config.pbtxt says `response_cache { enable: true }`
answers a request it has answered before from memory, without the batcher or the model.

One cache for the server, its byte budget set at start (`[server] response_cache_bytes`,
Triton's `--cache-config local,size=N`), shared by every model that enables it and emptied of
the least recently used answers first. A request's key is a hash (BLAKE2b, 128 bits) of its
model, version and every input's name, datatype, shape and bytes; an answer is kept as the
arrays the model returned, read-only. A hit and a miss are counted per version, with the time
each took (a miss's time is the lookup and the insert, not the inference), as Triton's
statistics and metrics count them."""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np

from .bytes_tensors import serialize_bytes


def request_key(model: str, version: int, tensors: dict[str, np.ndarray]) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{model}\0{version}\0".encode())
    for name in sorted(tensors):
        value = tensors[name]
        digest.update(f"{name}\0{value.dtype.str}\0{value.shape}\0".encode())
        digest.update(serialize_bytes(value) if value.dtype == object else np.ascontiguousarray(value).data)
    return digest.digest()


def _size(outputs: dict[str, np.ndarray]) -> int:
    return sum(len(serialize_bytes(v)) if v.dtype == object else v.nbytes for v in outputs.values()) + 128


class ResponseCache:
    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self.used_bytes = 0
        self._entries: OrderedDict[bytes, tuple[dict[str, np.ndarray], int]] = OrderedDict()
        self._lock = threading.Lock()  # answers are put from the batcher's worker threads too
        self.evicted = 0

    def get(self, key: bytes) -> dict[str, np.ndarray] | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            self._entries.move_to_end(key)
            return found[0]

    def put(self, key: bytes, outputs: dict[str, np.ndarray]) -> None:
        """Keep an answer (copied, read-only); one larger than the whole budget is not kept."""
        size = _size(outputs)
        if size > self.capacity_bytes:
            return
        kept = {}
        for name, value in outputs.items():
            copy = np.array(value, copy=True)
            copy.flags.writeable = False
            kept[name] = copy
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.used_bytes -= old[1]
            self._entries[key] = (kept, size)
            self.used_bytes += size
            while self.used_bytes > self.capacity_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self.used_bytes -= dropped
                self.evicted += 1

    def __len__(self) -> int:
        return len(self._entries)
