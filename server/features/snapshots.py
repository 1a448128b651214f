"""Snapshot files: written whole or not at all, and never the only copy until verified.

A snapshot is a directory named by the log position it covers (`snapshots/<seq>/`) holding
`arrays.npz` and `state.msgpack`. It is written into a staging directory, every file and the
directory fsynced, renamed into place, the parent fsynced, then read back in full (the zip's
CRCs checked); only then are snapshots older than the newest KEEP ones removed. A start loads
the newest that reads back whole and falls back to an older one (and a longer replay of the
log) when the newest is torn, so the log keeps every segment the oldest kept snapshot needs."""
from __future__ import annotations

import logging
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any, Iterator

import msgpack
import numpy as np

from .durable import fsync_dir, fsync_file, make_dirs

log = logging.getLogger(__name__)

KEEP = 2  # the newest snapshot and the one before it
_PIECE = 256 << 10  # bytes per write call
_SYNC_EVERY = 16 << 20  # bytes dirty at most before they are synced


def snapshot_dirs(root: Path) -> list[Path]:
    """The complete snapshots under `root`, oldest first (staging directories left out)."""
    return sorted(p for p in root.iterdir() if p.name.isdigit()) if root.is_dir() else []


def write(root: Path, seq: int, arrays: dict[str, np.ndarray], state: dict[str, Any]) -> Path:
    """Write, fsync, verify and only then prune; the new snapshot's directory."""
    make_dirs(root)
    target = root / f"{seq:020d}"
    for stale in root.glob(".staging-*"):  # a write a crash cut short: never read, never needed
        shutil.rmtree(stale, ignore_errors=True)
    staging = root / f".staging-{seq}"
    staging.mkdir()
    write_arrays(staging / "arrays.npz", arrays)
    (staging / "state.msgpack").write_bytes(msgpack.packb(state, use_bin_type=True))
    for name in ("arrays.npz", "state.msgpack"):
        fsync_file(staging / name)
    fsync_dir(staging)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    fsync_dir(root)
    verify(target)  # raises when what is on disk does not read back whole
    for old in snapshot_dirs(root)[:-KEEP]:
        shutil.rmtree(old)
    fsync_dir(root)
    return target


def write_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez's file (np.load reads it), written in small pieces and synced as it goes.

    A multi-gigabyte write in one call, or a sync of gigabytes dirty at once, holds the CPU in
    the kernel for milliseconds where no other thread can be scheduled: the server's requests
    on that CPU would wait out the snapshot's writes, however low the writer's priority."""
    with open(path, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        written = 0
        for name, array in arrays.items():
            array = array if array.flags.c_contiguous else array.copy(order="C")  # (0-d arrays stay 0-d)
            if array.dtype.hasobject:
                raise TypeError(f"snapshot array {name!r} holds Python objects")
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_2_0(member, np.lib.format.header_data_from_array_1_0(array))
                data = memoryview(array.reshape(-1).view(np.uint8))
                for start in range(0, len(data), _PIECE):
                    member.write(data[start:start + _PIECE])
                    written += min(_PIECE, len(data) - start)
                    if written >= _SYNC_EVERY:
                        raw.flush()
                        os.fdatasync(raw.fileno())
                        written = 0


def verify(path: Path) -> None:
    """Read a snapshot through, a piece at a time, checking every array's CRC (ValueError at
    the first that fails); nothing is kept in memory."""
    msgpack.unpackb((path / "state.msgpack").read_bytes(), raw=False, strict_map_key=False)
    with zipfile.ZipFile(path / "arrays.npz") as archive:
        bad = archive.testzip()
    if bad is not None:
        raise ValueError(f"{path.name}/arrays.npz: {bad} fails its CRC")


def read(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A snapshot's state and every array, read in full (a torn file raises here)."""
    state = msgpack.unpackb((path / "state.msgpack").read_bytes(), raw=False, strict_map_key=False)
    with np.load(path / "arrays.npz") as arrays:
        return state, {name: arrays[name] for name in arrays.files}


def newest_readable(root: Path) -> Iterator[tuple[Path, dict[str, Any], dict[str, np.ndarray]]]:
    """Snapshots newest first, each read in full; one that does not read is logged and skipped."""
    for path in reversed(snapshot_dirs(root)):
        try:
            state, arrays = read(path)
        except Exception as exc:  # torn, truncated, a bad CRC: any of them means the next one
            log.warning("snapshot unreadable; falling back to an older one and a longer replay",
                        extra={"snapshot": path.name, "error": f"{type(exc).__name__}: {exc}"[:300]})
            continue
        yield path, state, arrays


def oldest_kept_seq(root: Path) -> int:
    """The log position the oldest kept snapshot covers (0 without one): the log keeps what
    follows it, so a fallback can replay."""
    kept = snapshot_dirs(root)
    return int(kept[0].name) if kept else 0
