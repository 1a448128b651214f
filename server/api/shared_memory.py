"""System shared memory, as Triton serves it: a client on the same machine registers a region
it created (POSIX shared memory, /dev/shm), then names it, with an offset and a size, for an
input's bytes or an output's, and the tensor crosses without being copied into the message.

Only what the operator allows may be named: shared memory is off unless the server is started
with a key prefix (`--shared-memory-prefix /hanzo_`, or `/` for any), and a key is one
/dev/shm name under it (`/` then letters, digits, `_`, `.` and `-`), never a path. The file is
opened without following links and must be a regular file holding the registered range.
Regions are per server, at most MAX_REGIONS; registering, reading and writing need the infer
scope, as the calls that use them do."""
from __future__ import annotations

import mmap
import os
import re
import stat
import threading
from dataclasses import dataclass

from ..models.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted

SHM_ROOT = "/dev/shm"
KEY = re.compile(r"^/[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}$")
MAX_REGIONS = 256
# a tensor's parameters that put it in a region (tritonclient's set_shared_memory)
SHM_REGION, SHM_SIZE, SHM_OFFSET = "shared_memory_region", "shared_memory_byte_size", "shared_memory_offset"


@dataclass
class Region:
    name: str
    key: str
    offset: int
    byte_size: int
    memory: mmap.mmap

    def view(self, offset: int, size: int, field: str) -> memoryview:
        if offset < 0 or size < 0 or offset + size > self.byte_size:
            raise InvalidArgument(field, f"bytes {offset}..{offset + size} are outside shared memory region "
                                         f"{self.name!r} of {self.byte_size} bytes")
        start = self.offset + offset
        return memoryview(self.memory)[start:start + size]


class SharedMemoryRegistry:
    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix  # "": shared memory is not served
        self._regions: dict[str, Region] = {}
        self._lock = threading.Lock()

    def _served(self) -> None:
        if not self.prefix:
            raise FailedPrecondition("system shared memory is off: start the server with --shared-memory-prefix "
                                     "(the /dev/shm names clients may register, e.g. /hanzo_)")

    def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        self._served()
        if not name:
            raise InvalidArgument("name", "is empty")
        if not KEY.match(key) or not key.startswith(self.prefix):
            raise InvalidArgument("key", f"must be one /dev/shm name starting with {self.prefix!r} (letters, "
                                         f"digits, '_', '.', '-'), not a path")
        if offset < 0 or byte_size <= 0:
            raise InvalidArgument("byte_size", "offset must be >= 0 and byte_size > 0")
        with self._lock:
            if name in self._regions:
                raise InvalidArgument("name", f"shared memory region {name!r} is already registered")
            if len(self._regions) >= MAX_REGIONS:
                raise ResourceExhausted(f"{MAX_REGIONS} shared memory regions are registered: unregister one first")
            self._regions[name] = Region(name, key, offset, byte_size, _map(key, offset + byte_size))

    def unregister(self, name: str) -> None:
        """One region, or every region for an empty name."""
        self._served()
        with self._lock:
            names = [name] if name else list(self._regions)
            for each in names:
                region = self._regions.pop(each, None)
                if region is not None:
                    region.memory.close()

    def status(self, name: str) -> list[Region]:
        self._served()
        with self._lock:
            if not name:
                return list(self._regions.values())
            if name not in self._regions:
                raise NotFound(f"Unable to find system shared memory region: '{name}'")
            return [self._regions[name]]

    def region(self, name: str, field: str) -> Region:
        self._served()
        found = self._regions.get(name)
        if found is None:
            raise InvalidArgument(field, f"Unable to find system shared memory region: '{name}'")
        return found

    def close(self) -> None:
        if self.prefix:
            self.unregister("")


def _map(key: str, size: int) -> mmap.mmap:
    path = SHM_ROOT + key
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise InvalidArgument("key", f"shared memory {key!r} cannot be opened ({exc.strerror}): create it first") \
            from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InvalidArgument("key", f"shared memory {key!r} is not a region")
        if info.st_size < size:
            raise InvalidArgument("byte_size", f"shared memory {key!r} holds {info.st_size} bytes, fewer than "
                                               f"offset + byte_size ({size})")
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)


def _place(parameters, registry: SharedMemoryRegistry | None, field: str) -> tuple[Region, int, int]:
    if registry is None:
        raise InvalidArgument(field, "system shared memory is not served on this port")
    region = registry.region(parameters[SHM_REGION].string_param, field)
    size = parameters[SHM_SIZE].int64_param if SHM_SIZE in parameters else region.byte_size
    offset = parameters[SHM_OFFSET].int64_param if SHM_OFFSET in parameters else 0
    return region, offset, size


def region_bytes(parameters, registry: SharedMemoryRegistry | None, field: str) -> bytes:
    """An input's bytes from the region its parameters name (copied: the client may write the
    region again as soon as it has its answer)."""
    region, offset, size = _place(parameters, registry, field)
    return bytes(region.view(offset, size, field))


def write_region(parameters, registry: SharedMemoryRegistry | None, data: bytes, field: str) -> None:
    region, offset, size = _place(parameters, registry, field)
    if len(data) > size:
        raise InvalidArgument(field, f"needs {len(data)} bytes, but its shared memory holds {size}")
    region.view(offset, len(data), field)[:] = data
