"""A shopper erased from a Redis store: the tables, the fraud network and the dedup marks in
Redis are every replica's, built from every replica's log, so the erasure takes every replica's
data directory (all servers stopped). Each log loses the shopper's events (erasure.Without,
through the same rebuild as an embedded store), every key under the store's prefix is deleted,
and each replica replays its rewritten log into Redis, as a replica starting on an empty Redis
does; the event ids it replays are marked seen again for the rest of the dedup horizon.

While that runs, `<prefix>:rebuilding` is set in Redis and no replica opens on it (a feature
store open is refused): a crash midway leaves the mark, and running the same `hanzo forget`
again finishes the work (the logs already rewritten give nothing more to remove; the Redis part
is done again from the start). The pseudonym key (pseudonyms.REDIS_KEY) lies outside the prefix
and stays."""
from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import lock
from .dedup import id_hashes
from .erasure_records import Without, find, receipt
from .log import replay_log
from .log_frames import follows, read_gaps
from .erased import ErasedShoppers
from .pseudonyms import KEY_FILE, store_key
from .rebase import rebuild, recover_rebase
from .redis_durability import MARK, replica_name
from .service import FeatureService, FeatureStoreConfig
from .tenancy import scoped

PREFIX = "hz"  # RedisFeatureStore's key prefix

def forget_redis(config: FeatureStoreConfig, data_dirs: list[Path], merchant: str, user: str) -> dict:
    """Erase `user` of `merchant` from the Redis store at config.redis_url and the logs of its
    replicas (`data_dirs`, every one of them; no server may hold any); returns the receipt."""
    if not user:
        raise ValueError("name the shopper to forget (--user)")
    started = time.monotonic()
    with _every_replica_stopped(config, data_dirs, "erasure") as client:
        if config.erasure_later_events == "refuse":
            key = store_key(config.pseudonym_key_file, data_dirs[0], client)
            ErasedShoppers(key, data_dirs[0], client).add(scoped(merchant, user))
        shopper = _shopper(client, data_dirs, scoped(merchant, user))
        removed: Counter = Counter()
        if not shopper.anything() and not client.exists(MARK):
            return receipt(config, merchant, user, removed, shopper, None, started)
        # what was found is kept with the mark, so that a run finishing a crashed one still
        # knows the sessions only the logs it had rewritten held (deleted with the mark)
        client.set(MARK, json.dumps({"user": shopper.user, "sessions": sorted(shopper.sessions),
                                     "orders": sorted(shopper.orders)}))
        for data_dir in data_dirs:
            _rewrite_log(config, data_dir, Without(shopper, config, removed))
        _clear(client)
        kept = sum(_replay_into_redis(config, data_dir) for data_dir in data_dirs)
        client.delete(MARK)
        rewritten_aof = _rewrite_append_only_file(client)
    out = receipt(config, merchant, user, removed, shopper, kept, started)
    out["rewritten"] = ["event logs of " + ", ".join(str(d) for d in data_dirs), "snapshots",
                        "Redis: feature tables, fraud network, dedup marks, catalogue feed"] + (
        ["Redis's append-only file (BGREWRITEAOF)"] if rewritten_aof else [])
    return out


def _check_whole_log(data_dir: Path) -> None:
    """A log whose first segments were dropped (log_retention_days) cannot rebuild Redis."""
    segments = sorted((data_dir / "log").glob("*.log"))  # as EventLog lists them, without opening it
    begins = int(segments[0].stem) if segments else 0
    if begins > 0 and not follows(0, begins, read_gaps(data_dir / "log")):
        raise ValueError(f"{data_dir}: its event log begins at sequence {begins} (earlier segments were "
                         "dropped by log_retention_days), so the tables cannot be made again from it")


@contextmanager
def _every_replica_stopped(config: FeatureStoreConfig, data_dirs: list[Path], why: str):
    """A client of the Redis store, with every replica's data directory locked (a crashed erasure
    or rebase in one finished first) and checked to be all of them; released on the way out."""
    import redis

    if len(data_dirs) > 1 and config.replica:
        raise ValueError("[features] replica names one replica, and these are several: leave it unset (each "
                         "replica's data directory records its name)")
    client = redis.Redis.from_url(config.redis_url)
    held: list[Path] = []
    try:
        for data_dir in data_dirs:
            lock.acquire(data_dir, why)
            held.append(data_dir)
            recover_rebase(data_dir)
        _check_every_replica(client, config, data_dirs)
        yield client
    finally:
        for data_dir in held:
            lock.release(data_dir)
        client.close()


def _check_every_replica(client: Any, config: FeatureStoreConfig, data_dirs: list[Path]) -> None:
    """Every replica that ever wrote to this Redis must be given: one left out would bring the
    shopper back when it replays its log, and its batches would be lost from Redis meanwhile."""
    given = {replica_name(config.replica, d) for d in data_dirs}
    known = {name.decode()[len(f"{PREFIX}:applied:"):] for name in client.scan_iter(match=f"{PREFIX}:applied:*")}
    missing = sorted(known - given)
    if missing:
        raise ValueError(f"Redis holds the batches of replicas not given: {', '.join(missing)} (their data "
                         f"directories' names); give every replica's --data-dir")


def _shopper(client: Any, data_dirs: list[Path], user: str):
    """The shopper as the logs hold them, and as an unfinished run found them (the mark)."""
    shopper = find(data_dirs, user)
    try:
        earlier = json.loads(client.get(MARK) or b"{}")
    except ValueError:
        earlier = {}
    if earlier.get("user") not in (None, user):
        raise ValueError(f"an erasure of another shopper stopped midway ({MARK} in Redis): run that one again first")
    shopper.sessions |= set(earlier.get("sessions", ()))
    shopper.orders |= set(earlier.get("orders", ()))
    return shopper


def _rewrite_append_only_file(client: Any) -> bool:
    """The deleted keys leave Redis's append-only file too (rewritten in the background); RDB
    snapshots hold them until the next save (docs/operations.md)."""
    try:
        if client.config_get("appendonly").get("appendonly") in (b"yes", "yes"):
            client.bgrewriteaof()
            return True
    except Exception:  # a managed Redis may refuse CONFIG or the rewrite: said in the receipt by omission
        return False
    return False


def _rewrite_log(config: FeatureStoreConfig, data_dir: Path, without: Without) -> None:
    """The log without the shopper (rebuilt through an embedded store, which only checks and
    orders it here), and no snapshot: the replica's state is Redis's, replayed next."""
    had_key = (data_dir / KEY_FILE).exists()
    rebuild(dataclasses.replace(config, backend="embedded", data_dir=data_dir), data_dir, without, "erased",
            strict=True)
    if not had_key:  # the embedded store made one; this replica's key is Redis's
        (data_dir / KEY_FILE).unlink(missing_ok=True)
    shutil.rmtree(data_dir / "snapshots", ignore_errors=True)


def rebuild_redis(config: FeatureStoreConfig, data_dirs: list[Path]) -> int:
    """Redis's tables made again from every replica's log (`data_dirs`, every one of them; no
    server may hold any), as an erasure rebuilds them, without taking anyone out: after the
    features' definitions changed (redis_layout.py). Returns the events replayed."""
    for data_dir in data_dirs:  # nothing is cleared unless every log can be replayed whole
        _check_whole_log(data_dir)
    with _every_replica_stopped(config, data_dirs, "rebuild") as client:
        held = json.loads(client.get(MARK) or b"{}")
        if held.get("user") is not None:
            raise ValueError(f"an erasure stopped midway ({MARK} in Redis): finish it first with the same "
                             "`hanzo forget` (it rebuilds the tables too)")
        client.set(MARK, json.dumps({"rebuild": True}))  # replicas refuse to open on half a store
        _clear(client)
        for data_dir in data_dirs:  # a snapshot would skip the log it covers: the state is Redis's
            shutil.rmtree(data_dir / "snapshots", ignore_errors=True)
        replayed = sum(_replay_into_redis(config, data_dir) for data_dir in data_dirs)
        client.delete(MARK)
    return replayed


def _clear(client: Any, batch: int = 1000) -> int:
    """Every key under the prefix but the mark; returns how many went."""
    gone, names = 0, []
    for name in client.scan_iter(match=f"{PREFIX}:*", count=batch):
        if name.decode() != MARK:
            names.append(name)
        if len(names) >= batch:
            gone += client.unlink(*names)
            names = []
    if names:
        gone += client.unlink(*names)
    return gone


def _replay_into_redis(config: FeatureStoreConfig, data_dir: Path, batch: int = 10_000) -> int:
    """One replica's log sent into the emptied Redis (its open does it: Redis holds nothing of
    it), then its event ids marked seen for what is left of the dedup horizon."""
    service = FeatureService(dataclasses.replace(config, backend="redis", data_dir=data_dir))
    service.finishing_erasure = True
    service.open()
    try:
        horizon, watermark = service.dedup.horizon_ms, service.store.watermark
        events = 0
        pipe = service.redis.pipeline(transaction=False)
        for _, records in replay_log(data_dir / "log"):
            events += len(records)
            hashes = id_hashes([r["event_id"] for r in records]).tolist()
            for h, record in zip(hashes, records):
                left = horizon - max(0, watermark - record["timestamp"])
                if left > 0:
                    pipe.set(f"{PREFIX}:id:{h}", "1", px=left)
            if len(pipe) >= batch:
                pipe.execute()
        pipe.execute()
    finally:
        service.close()
    return events
