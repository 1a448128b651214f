"""The canonical files of ../shared/data/README.md: events (JSONL), catalog (JSONL), gzip or
not by the file name. Readers stream; writers replace the file whole."""
from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

import orjson

from .events import EventError, record_from_json, record_to_json


def _open(path: Path, mode: str) -> IO[bytes]:
    path = Path(path)
    return gzip.open(path, mode + "b") if path.name.endswith(".gz") else open(path, mode + "b")


def iter_json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number from 1, parsed object) for every non-blank line; a line that is not JSON
    yields an EventError in place of the object."""
    with _open(path, "r") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                yield number, orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield number, EventError("line", f"not JSON ({exc})")


def iter_records(path: Path) -> Iterator[tuple[int, dict[str, Any] | EventError]]:
    """(line number, record) per event line; a malformed line yields its EventError."""
    for number, obj in iter_json_lines(path):
        if isinstance(obj, EventError):
            yield number, obj
            continue
        try:
            yield number, record_from_json(obj)
        except EventError as exc:
            yield number, exc


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every event of a file, raising on the first malformed line (for trusted files)."""
    out = []
    for number, record in iter_records(path):
        if isinstance(record, EventError):
            raise ValueError(f"{path}:{number}: {record}")
        out.append(record)
    return out


def write_records(path: Path, records: Iterable[dict[str, Any]]) -> int:
    return _write_lines(path, (record_to_json(r) for r in records))


def read_catalog(path: Path) -> list[dict[str, Any]]:
    products = []
    for number, obj in iter_json_lines(path):
        if isinstance(obj, EventError) or not isinstance(obj, dict) or not obj.get("product_id"):
            raise ValueError(f"{path}:{number}: a catalog line is an object with a product_id")
        products.append(obj)
    return products


def write_catalog(path: Path, products: Iterable[dict[str, Any]]) -> int:
    return _write_lines(path, products)


def _write_lines(path: Path, objects: Iterable[Any]) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial{path.suffix}")  # keeps the .gz ending
    count = 0
    try:
        with _open(tmp, "w") as out:
            for obj in objects:
                out.write(orjson.dumps(obj))
                out.write(b"\n")
                count += 1
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count
