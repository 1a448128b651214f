"""What Redis mode needs of Redis itself to keep exactly-once across Redis's own crash."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("hanzo.server.features.service")


def check_redis_durability(client: Any) -> None:
    """What Redis mode relies on across a crash of Redis itself: an append-only file synced on
    every write. Anything less can lose acknowledged applies and seen-marks; said once, at open."""
    try:
        settings = {**client.config_get("appendonly"), **client.config_get("appendfsync")}
    except Exception:  # a managed Redis may refuse CONFIG: nothing to check against
        return
    decoded = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
               for k, v in settings.items()}
    if decoded.get("appendonly") != "yes" or decoded.get("appendfsync") != "always":
        log.warning("Redis may lose acknowledged events if it crashes: exactly-once across a Redis crash needs "
                    "appendonly yes and appendfsync always", extra={"redis": decoded})


MARK = "hz:rebuilding"  # set while an erasure rebuilds Redis (redis_erasure.py)
REPLICA_FILE = "replica.name"  # a replica's name in Redis, kept in its data directory


def replica_name(configured: str, data_dir: Path) -> str:
    """A replica's name in Redis (its log position, its pending ids): [features] replica, else
    the one its data directory recorded at its first open in Redis mode, else the directory's
    absolute path (what `remember_replica_name` then records), so that `hanzo forget` run from
    another host or path finds the same name."""
    if configured:
        return configured
    try:
        return (Path(data_dir) / REPLICA_FILE).read_text().strip() or str(Path(data_dir).resolve())
    except FileNotFoundError:
        return str(Path(data_dir).resolve())


def remember_replica_name(data_dir: Path, name: str) -> None:
    path = Path(data_dir) / REPLICA_FILE
    if not path.exists():
        path.write_text(name + "\n")


class RebuildUnfinished(OSError):
    """The store is not whole yet (an OSError: what a start reports in one line)."""


def refuse_if_rebuilding(client: Any) -> None:
    """A replica opening on a Redis whose erasure stopped midway would serve half a store."""
    held = client.get(MARK)
    if held is None:
        return
    if b'"rebuild"' in held:
        raise RebuildUnfinished(f"Redis holds {MARK}: a `hanzo rebuild-redis` of this store stopped before it was "
                                "done; run it again (with every replica's --data-dir) to finish it")
    raise RebuildUnfinished(f"Redis holds {MARK}: an erasure of this store stopped before it was done; run the same "
                            f"`hanzo forget` again (with every replica's --data-dir) to finish it")
