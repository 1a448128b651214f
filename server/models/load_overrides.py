"""RepositoryModelLoad's `file:<version>/<name>` overrides, as Triton documents them: the files of
a model directory sent in the load itself, served in place of the repository's folder (or as a
model the repository does not hold) until the next load without files, or the unload.

The files are written into a folder of the server's own choosing (a new temporary directory),
never at a path the caller names: each key must be a version number and a relative file name of
plain parts (no "..", no absolute path, no empty part), so nothing lands outside that folder.
As in Triton, a `config` must come with them."""
from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from .errors import InvalidArgument, ResourceExhausted

PREFIX = "file:"
MAX_FILES = 64
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")


def _relative(key: str) -> Path:
    parts = key[len(PREFIX):].split("/")
    field = f'parameters["{key[:200]}"]'
    if len(parts) < 2 or not parts[0].isascii() or not parts[0].isdigit() or int(parts[0]) < 1:
        raise InvalidArgument(field, "must be file:<version>/<file name>, with a version number of 1 or more")
    if len(parts) > 8 or not all(_PART.match(p) and p not in (".", "..") for p in parts[1:]):
        raise InvalidArgument(field, "a file name is made of parts of letters, digits, '_', '-' and '.' (not "
                                     "first), joined by '/'")
    return Path(str(int(parts[0])), *parts[1:])


def write_override_folder(name: str, files: dict[str, bytes], config_given: bool) -> Path:
    """A new folder holding `files` (keys `file:<version>/<name>`) as model `name`'s directory.
    Raises InvalidArgument naming the parameter."""
    if not config_given:
        raise InvalidArgument('parameters["config"]', "file: overrides need a config override beside them (Triton's "
                                                      "rule: the files are the whole model directory)")
    if len(files) > MAX_FILES:
        raise InvalidArgument("parameters", f"{len(files)} file: overrides; at most {MAX_FILES}")
    relative = {key: _relative(key) for key in files}
    _check_distinct(relative)
    root = Path(tempfile.mkdtemp(prefix="hanzo-load-"))
    folder = root / name
    try:
        for key, path in relative.items():
            target = folder / path
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "xb") as out:  # a fresh folder: nothing to overwrite or follow
                out.write(files[key])
    except OSError as exc:  # a full disk, not the caller's mistake
        shutil.rmtree(root, ignore_errors=True)
        raise ResourceExhausted(f"the load's files could not be written: {exc.strerror or type(exc).__name__}") from None
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return folder


def _check_distinct(relative: dict[str, Path]) -> None:
    """Two keys for one file (file:1/a and file:01/a), or a file where another key needs a folder
    (file:1/a and file:1/a/b), are refused by name."""
    seen: dict[Path, str] = {}
    for key, path in relative.items():
        if path in seen:
            raise InvalidArgument(f'parameters["{key[:200]}"]', f"names the same file as {seen[path][:200]!r}")
        seen[path] = key
    for key, path in relative.items():
        for parent in path.parents:
            if parent in seen:
                raise InvalidArgument(f'parameters["{key[:200]}"]', f"needs {str(parent)!r} as a folder, but "
                                                                    f"{seen[parent][:200]!r} sends it as a file")


def remove_override_folder(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder.parent, ignore_errors=True)
