"""Whole or not at all: a file written beside its final name and renamed over it, so a
server that reloads the file when it changes (or a start that reads a journal) never reads
half of one."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np


def write_text_atomic(path: Path, text: str, fsync: bool = False) -> None:
    """`text` at `path`, by way of `.<name>.tmp` beside it; `fsync`: on disk before the rename
    (a journal that must outlive a power loss)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp")
    with open(staging, "w") as handle:
        handle.write(text)
        if fsync:
            handle.flush()
            os.fsync(handle.fileno())
    staging.replace(path)


def save_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
    os.close(handle)
    try:
        np.savez(staging, **arrays)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
