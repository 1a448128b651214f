"""A model's production pointer: which version answers its unnamed requests, chosen by a
person (promote, roll back), never by a version folder appearing.

`<root>/<model>/production.json` holds the version in production and the versions promoted
before it, newest last. A model without the file keeps Triton's rule (the newest version the
version_policy selects serves); a model with it serves its production version, keeps the
version it replaced loaded (so a rollback is one switch, with nothing to build), and loads the
newest version above production as the candidate: warm, answering only requests that name
its version. The file is written whole and fsynced with its directory, so a promotion that
was acknowledged survives a power loss and a start serves the last promoted version."""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .config import ConfigError
from .errors import FailedPrecondition
from .model_folder import numeric_versions

POINTER_FILE = "production.json"
HISTORY_KEPT = 50  # promotions remembered for rollbacks; older ones are only in the audit log


@dataclass(frozen=True)
class Production:
    version: int
    history: tuple[int, ...]  # promoted versions, oldest first; the last is `version`
    action: str = "promote"  # promote | rollback | pin: how the pointer got here
    by: str = ""  # who asked (a key's name, "cli", "train")
    at: float = 0.0  # wall-clock seconds

    @property
    def previous(self) -> int | None:
        """The version a rollback returns to."""
        return self.history[-2] if len(self.history) > 1 else None

    def to_json(self) -> dict:
        return {"version": self.version, "history": list(self.history), "action": self.action, "by": self.by,
                "at": self.at}


def pointer_path(model_dir: Path) -> Path:
    return Path(model_dir) / POINTER_FILE


def read_pointer(model_dir: Path) -> Production | None:
    """The model's pointer, None when it has none; ConfigError naming the file when it is not
    one (a load then fails and what serves keeps serving)."""
    path = pointer_path(model_dir)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a production pointer ({exc})") from None
    try:
        version = int(data["version"])
        history = tuple(int(v) for v in data.get("history") or [version])
        if version < 1 or not history or history[-1] != version:
            raise ValueError("version must be a positive integer and the last of history")
        return Production(version, history, str(data.get("action", "promote")), str(data.get("by", "")),
                          float(data.get("at", 0.0)))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: not a production pointer ({exc})") from None


def write_pointer(model_dir: Path, production: Production) -> None:
    """Whole, fsynced, and its name fsynced in the directory: acknowledged means durable. The
    staging file's name is unique, so two writers (a server and the command line) never write
    into one file; the last rename wins whole."""
    model_dir = Path(model_dir)
    handle, staging = tempfile.mkstemp(dir=model_dir, prefix=f".{POINTER_FILE}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(json.dumps(production.to_json()) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(staging, pointer_path(model_dir))
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    fd = os.open(model_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def promoted(current: Production | None, version: int, by: str, action: str = "promote") -> Production:
    history = (current.history if current else ()) + (version,)
    if current is not None and current.version == version:
        history = current.history
    return Production(version, history[-HISTORY_KEPT:], action, by, time.time())


def rolled_back(current: Production | None, model: str, by: str) -> Production:
    if current is None or current.previous is None:
        raise FailedPrecondition(f"model {model!r} has no earlier promoted version to roll back to"
                                 + (f" (production: version {current.version})" if current else
                                    " (it has no production pointer: promote a version first)"))
    return Production(current.previous, current.history[:-1], "rollback", by, time.time())


def pin_production(model_dir: Path, by: str) -> Production | None:
    """Before a new version is written into a model that has no pointer: the pointer, at the
    newest version there now that holds a model, so the new one arrives as a candidate (if
    that one does not load where an older one serves, the older one keeps serving:
    models/repository.py). A model with no version yet gets none (its first version is
    production by having nothing to be compared with; call again after writing it)."""
    model_dir = Path(model_dir)
    current = read_pointer(model_dir) if model_dir.is_dir() else None
    if current is not None:
        return current
    versions = [v for v in numeric_versions(model_dir) if holds_model(model_dir / str(v))] \
        if model_dir.is_dir() else []
    if not versions:
        return None
    production = promoted(None, max(versions), by, action="pin")
    write_pointer(model_dir, production)
    return production


MODEL_SUFFIXES = (".onnx", ".npz")  # an ONNX model; pricing's demand model (models/file_versions.py)


def holds_model(version_dir: Path) -> bool:
    """Whether a version folder holds a model file (a half-written or emptied one does not)."""
    return version_dir.is_dir() and any(f.is_file() and f.suffix in MODEL_SUFFIXES for f in version_dir.iterdir())


def newest_above(model_dir: Path, version: int) -> int | None:
    """The candidate on disk: the newest version folder above `version`, None if there is none."""
    return max((v for v in numeric_versions(model_dir) if v > version), default=None)


def serving_plan(pointer: Production, present: list[int]) -> tuple[list[int], int | None, int | None]:
    """What a model with a pointer loads: the versions to try for production in order (the
    pointer's, then those promoted before it, newest first: the last promoted version that
    loads), the previous production kept warm for a rollback, and the candidate (the newest
    version above production), each only where its folder holds a model."""
    have = set(present)
    order = [v for v in dict.fromkeys(reversed(pointer.history)) if v in have]
    previous = pointer.previous if pointer.previous in have and pointer.previous != pointer.version else None
    newest = max(present, default=0)
    candidate = newest if newest > pointer.version else None
    return order, previous, candidate
