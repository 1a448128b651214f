"""glibc malloc tuned for a server whose callers may send large bodies now and then.

By default glibc raises its mmap threshold after freeing a large block, so the next 5 MiB
request body comes from the heap, and a heap fragmented by small long-lived objects rarely
shrinks: a few hostile calls would leave their size in RSS for good. A fixed threshold keeps
large buffers in mmap (returned to the system on free), fewer arenas bound what the gRPC and
ONNX Runtime threads each keep. (The body of a call is bounded first by max_message_bytes,
which gRPC enforces before reading it.)"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
MMAP_THRESHOLD = 256 << 10
TRIM_THRESHOLD = 4 << 20
ARENA_MAX = 4


def _libc():
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt  # noqa: B018 - absent on a libc that is not glibc
        libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return libc


def tune_malloc() -> bool:
    """Apply the settings; False where the C library is not glibc (nothing to tune)."""
    libc = _libc()
    if libc is None:
        return False
    ok = all(libc.mallopt(option, value) == 1 for option, value in
             ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_ARENA_MAX, ARENA_MAX)))
    if not ok:
        log.warning("mallopt refused a setting; large request bodies may stay in RSS")
    return ok
