"""Reports that say where they were made: every JSON report a command writes carries its
provenance (the machine, the moment, the command line), so a figure quoted from it can be
traced and measured again (docs/results.md)."""
from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

from hanzo.server.models.files import write_text_atomic


def machine() -> dict[str, Any]:
    return {"host": platform.node(), "platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "memory_gib": _memory_gib()}


def _memory_gib() -> float | None:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return round(pages * size / 2 ** 30, 1)


def command_line() -> str:
    """How this process was started, as a person would type it."""
    argv = sys.argv
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    module = spec.name.removesuffix(".__main__") if spec is not None and spec.name else None
    if (argv and Path(argv[0]).name == "hanzo") or module == "hanzo.server.commands":
        return shlex.join(["hanzo", *argv[1:]])
    if module:
        return shlex.join(["python", "-m", module, *argv[1:]])
    return shlex.join(["python", *argv])


def provenance() -> dict[str, Any]:
    return {"machine": machine(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": command_line()}


def write_report(path: Path, report: dict[str, Any]) -> None:
    """The report as JSON with its provenance, written whole (renamed into place)."""
    write_text_atomic(path, json.dumps({**report, "provenance": provenance()}, indent=1, default=float))


def print_report(report: dict[str, Any], path: Path | None) -> dict[str, Any]:
    """A micro-benchmark's ending: the report on stdout, and written with its provenance when
    a path is given. Returns the report."""
    print(json.dumps(report, indent=2))
    if path:
        write_report(path, report)
    return report
