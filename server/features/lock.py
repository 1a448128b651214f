"""One process at a time: an exclusive lock (flock) on a small file beside a directory, holding
the owner's pid for the message another process gets. A data directory is locked by the server
that opens its store, so a second server (or a bulk ingest) on the same directory is refused at
once instead of writing into files the first one has moved or is appending to. The lock sits
beside the directory, not in it, so it holds while the directory itself is swapped by renames.
Re-entrant within a process (a demo's history move and the store's open share one)."""
from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path


class DirectoryBusy(OSError):
    """Another process holds the lock."""


_held: dict[Path, tuple[int, int]] = {}  # lock file -> (fd, holds)
_guard = threading.Lock()


# Held while a data directory is swapped for a rebuilt one (rebase.rebuild), and by whoever
# appends to a file inside it from another thread (the audit log), so no line lands in the
# directory on its way out.
SWAP = threading.Lock()


def lock_file(directory: Path) -> Path:
    directory = Path(directory).resolve()
    return directory.parent / f".{directory.name}.lock"


def acquire(directory: Path, what: str) -> None:
    """Hold `directory`'s lock (again, if this process holds it); DirectoryBusy names the
    process that holds it otherwise. `what` says what the directory is, for the message."""
    path = lock_file(directory)
    with _guard:
        if path in _held:
            fd, holds = _held[path]
            _held[path] = (fd, holds + 1)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DirectoryBusy(f"{directory} is in use by another hanzo process (pid {holder}): one {what} "
                                f"per directory") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        _held[path] = (fd, 1)


def release(directory: Path) -> None:
    path = lock_file(directory)
    with _guard:
        if path not in _held:
            return
        fd, holds = _held[path]
        if holds > 1:
            _held[path] = (fd, holds - 1)
            return
        del _held[path]
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def close_inherited() -> None:
    """In a forked child: close its copies of the parent's lock descriptors, so the locks end
    with the parent alone. Never flock(LOCK_UN), which would unlock them for the parent too;
    and no _guard, which a thread that does not exist in the child may have held."""
    for fd, _ in list(_held.values()):
        os.close(fd)
    _held.clear()
