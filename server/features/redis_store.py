"""The online store on Redis, for many replicas: the same features, buffers and reads as the
embedded store, but each batch's table updates run in Redis as one Lua script call (one round
trip, atomic) and a read fetches every table an answer needs in one pipelined round trip, then
gathers through the same native code.

Layout (all keys under `hz:`): a hash per (table, entity key) holding the ring buffer's slots
(windows: e<slot> = bucket, v<slot> = the slot's columns as packed little-endian doubles;
sequences: i<slot>/t<slot> and the push count n; distinct: h<slot>/s<slot>; last: v/t; span:
f/l); a sorted set per entity type of the keys seen, scored by last sight (hz:e:<entity>); the
store's clock in hz:watermark. Keys expire a little after the longest window that reads them
(`ttl_days` for the others).

Users follow expiry.READ_TTL_MS as in the embedded store: one that no real event has named
is also in hz:r:user, scored by its newest event, and the keys of its untimed tables expire a
little after READ_TTL_MS; reads answer it as unknown once that score is READ_TTL_MS old, and
evict() deletes its keys and members. The script call that applies a user's first real event
takes it out of hz:r:user and persists those keys, for good. A user already in hz:e:user but
not in hz:r:user counts as real (so a store written before this rule forgets no one).

In process, a replica keeps no per-entity state that grows with the shoppers: the entity rows
the shared apply path makes only number a batch's keys for its script call (every read goes to
Redis by key), so an index past `index_limit` keys starts over before the next batch; the
last-seen times and "real event" marks the embedded store keeps for expiry are never made
(presence, its TTL and realness are the sorted sets'; a batch's marks live until its flush).
Products stay, as in the embedded store: the catalogue bounds them.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import msgpack
import numpy as np

from . import expiry
from .dedup import EventsInFlight
from .definitions import ENTITIES, ENTITY_TTL_MS
from .redis_graph import LIBRARY as GRAPH_LIBRARY
from .redis_graph import RedisEntityGraph
from .redis_sends import OrderedSends
from .redis_tables import materialize
from .store import FeatureBlock, FeatureStore
from .tables import DistinctTable, LastTable, LifetimeTable, SequenceTable, SpanTable, Table, WindowTable

DAY_MS = 86_400_000
_SCRIPT = GRAPH_LIBRARY + Path(__file__).with_name("redis_apply.lua").read_text()
_DEDUP_SCRIPT = Path(__file__).with_name("redis_dedup.lua").read_text()
_READ_SCRIPT = Path(__file__).with_name("redis_read.lua").read_text()
_FORGET_SCRIPT = Path(__file__).with_name("redis_forget.lua").read_text()
_BOUNDED_ENTITIES = tuple(entity for entity in ENTITIES if entity != "product")
# Keys an entity index may hold between batches. Any limit gives the same answers; this one
# keeps a small store's keys listed (tests sample them) and a large one's a few MB.
INDEX_LIMIT = 16_384
# Read-created users forgotten per evict() script call: each call holds the server alone.
FORGET_BATCH = 1_000


class RedisFeatureStore(FeatureStore):
    def __init__(self, client, ttl_days: float = 35.0, prefix: str = "hz", async_client=None,
                 index_limit: int = INDEX_LIMIT) -> None:
        super().__init__()
        self.index_limit = index_limit
        self.redis = client
        self.prefix = prefix
        self.ttl_ms = int(ttl_days * DAY_MS)
        self.async_redis = async_client
        self.sends = OrderedSends(client, async_client, _SCRIPT)
        self.defer_sends = False  # the server sends from the event loop (send_async) after apply()
        self._read = client.register_script(_READ_SCRIPT)
        self._read_async = async_client.register_script(_READ_SCRIPT) if async_client is not None else None
        self._forget = client.register_script(_FORGET_SCRIPT)
        # Rows of this batch named by a real event (expiry.READ_TTL_MS's entities), until its flush.
        self._real_rows: dict[str, set[int]] = {}
        self.graph = RedisEntityGraph(client, prefix, async_client)
        # A table's keys carry a digest of its shape, so a store whose feature definitions
        # changed never reads another layout's hashes.
        self._table_ids = {id(t): f"{i}.{_shape_digest(t)}" for i, t in enumerate(self.tables)}
        self.ops_sent = 0
        # Set by the feature service before apply(): (replica, log position after the batch,
        # the batch's event ids or None, its catalogue feed entry or None), recorded in the same
        # script call, so the replica's position, the ids' end of pending and the feed entry
        # move with the tables, atomically.
        self.applied_marker: tuple[str, int, list[str] | None, tuple | None] | None = None

    # ------------------------------------------------------------------ keys

    def _key(self, table: Table, entity_key: str) -> str:
        return f"{self.prefix}:t{self._table_ids[id(table)]}:{entity_key}"

    def load_catalog(self, products) -> None:
        """The catalogue's products exist from the start, as in the embedded store: a product
        no event has touched yet reads as zero views, not as unknown."""
        products = list(products)
        super().load_catalog(products)
        for first in range(0, len(products), 10_000):
            self.redis.zadd(self._members("product"), {p["product_id"]: 0 for p in products[first:first + 10_000]},
                            nx=True)

    def _members(self, entity: str) -> str:
        return f"{self.prefix}:e:{entity}"

    def _read_only(self, entity: str) -> str:
        """The sorted set of an expiry.READ_TTL_MS entity's keys no real event has named."""
        return f"{self.prefix}:r:{entity}"

    def _ttl(self, table: Table) -> int | None:
        if isinstance(table, WindowTable) and table.entity != "user":
            return table.bucket_ms * (table.buckets + 2)
        if isinstance(table, WindowTable):
            # a user's windows are kept as the embedded store keeps them (a read sees only the
            # buckets in its window): Recommend reads a customer back after months as of their
            # last purchase (surfaces/recommend_inputs.lapsed_moment)
            return None
        if isinstance(table, DistinctTable):
            return max(f.window_ms for f in self.features.values() if f.aggregation == "distinct") + DAY_MS
        if isinstance(table, (SpanTable, LifetimeTable, SequenceTable)) and ENTITY_TTL_MS[table.entity] is None:
            # an account's age, life and last purchases are read however long it was away (a
            # customer back after months still has their staples): kept as long as the account,
            # as the embedded store keeps them
            return None
        return self.ttl_ms

    # ------------------------------------------------------------------ writes

    def _flush_tables(self) -> None:
        """Turn every table's buffered updates into script operations, send them in one call."""
        ops: list[list] = []
        seen: dict[str, dict[int, int]] = {}
        for table in self.tables:
            keys = self.entities[table.entity].keys
            batch = table.take()
            rows, stamps = batch["rows"], batch["stamps"]
            if not rows:
                continue
            last = seen.setdefault(table.entity, {})
            for row, ts in zip(rows, stamps):
                if ts > last.get(row, -1):
                    last[row] = ts
            if isinstance(table, WindowTable):
                # One operation per (entity, bucket): the batch's additions to it, in order.
                floor = self.watermark // table.bucket_ms - table.buckets
                grouped: dict[tuple[int, int], list] = {}
                for row, ts, col, amount in zip(rows, stamps, batch["column"], batch["amount"]):
                    adds = grouped.get((row, ts // table.bucket_ms))
                    if adds is None:
                        adds = grouped[(row, ts // table.bucket_ms)] = []
                    adds.append(col)
                    adds.append(float(amount))
                for (row, bucket), adds in grouped.items():
                    ops.append([1, self._key(table, keys[row]), table.buckets, bucket, floor, table.columns, adds])
            elif isinstance(table, SequenceTable):
                products = self.entities["product"].keys
                for row, ts, item in zip(rows, stamps, batch["item"]):
                    ops.append([2, self._key(table, keys[row]), table.length, ts, products[item]])
            elif isinstance(table, DistinctTable):
                for row, ts, h in zip(rows, stamps, batch["hash"]):
                    ops.append([3, self._key(table, keys[row]), table.SLOTS, ts, str(h)])
            elif isinstance(table, LifetimeTable):
                # in time order, as the embedded kernels take their batch
                kind = {"total": 13, "days": 14, "first_day": 15, "last_day": 15}[table.aggregation]
                first = float(table.aggregation == "first_day")
                for ts, row, value in sorted(zip(stamps, rows, batch["value"])):
                    ops.append([kind, self._key(table, keys[row]), ts, first if kind == 15 else float(value), DAY_MS])
            elif isinstance(table, LastTable):
                for row, ts, value in zip(rows, stamps, batch["value"]):
                    ops.append([4, self._key(table, keys[row]), ts, float(value)])
            elif isinstance(table, SpanTable):
                for row, ts in zip(rows, stamps):
                    ops.append([5, self._key(table, keys[row]), ts])
            ttl = self._ttl(table)
            if ttl is not None:
                ops.extend([8, self._key(table, keys[row]), ttl] for row in set(rows))
        for entity, last in seen.items():
            if entity in expiry.READ_TTL_MS:
                continue
            keys = self.entities[entity].keys
            for row, ts in last.items():
                ops.append([6, self._members(entity), keys[row], ts])
        ops.extend(self._lasting_ops(seen))
        ops.extend(self.graph.take_ops())
        guard, feed = ["", ""], ["", "", "", ""]
        if self.applied_marker is not None:
            replica, seq, ids, entry = self.applied_marker
            guard = [f"{self.prefix}:applied:{replica}", seq]
            if ids:
                ops.append([12, f"{self.prefix}:pending:{replica}", f"{self.prefix}:id:", ids])
            if entry is not None:
                feed = list(entry)
            self.applied_marker = None
        if ops or guard[0]:
            self.sends.add([msgpack.packb(ops, use_bin_type=True), self.watermark, *guard, *feed])
            self.ops_sent += len(ops)

    def _lasting_ops(self, seen: dict[str, dict[int, int]]) -> list[list]:
        """Presence of the batch's expiry.READ_TTL_MS entities (op 11): its newest event by
        key (-1: none in a table) and whether a real event named it, with the keys of its
        untimed tables, which the script expires or persists by what it finds."""
        ops: list[list] = []
        for entity, read_ttl in expiry.READ_TTL_MS.items():
            real = self._real_rows.pop(entity, set())
            last = seen.get(entity, {})
            untimed = [t for t in self.tables if t.entity == entity and self._ttl(t) is None]
            keys = self.entities[entity].keys
            # a margin past the rule, so a key outlives its user while the store's clock
            # keeps up with the wall clock Redis expires by
            ttl = read_ttl + DAY_MS
            for row in sorted(set(last) | real):
                key = keys[row]
                ops.append([11, self._members(entity), self._read_only(entity), key, last.get(row, -1),
                            int(row in real), ttl, [self._key(t, key) for t in untimed]])
        return ops

    def apply(self, records: list[dict]) -> None:
        self._bound_indexes()
        super().apply(records)
        if not self.defer_sends:
            self.sends.send()

    def _bound_indexes(self) -> None:
        """Start over an entity index past `index_limit` keys, so one holds at most that many
        plus a batch's. Nothing reads a row once its batch is flushed; an entity whose rows
        still wait in a buffer (a batch that failed before its flush) keeps its index, as
        those rows go out with the next flush."""
        buffered = {table.entity for table in self.tables if table.pending_rows} | set(self._real_rows)
        for entity in _BOUNDED_ENTITIES:
            index = self.entities[entity]
            if len(index.keys) > self.index_limit and entity not in buffered:
                index.keys.clear()
                index.rows.clear()

    def _flush(self) -> None:
        self._flush_tables()

    def _note_seen(self) -> None:
        """Nothing: an entity's newest event time is its score in the presence set, which is
        what reads and evict() use; a copy by row here would only grow."""

    def _mark_real(self, entity: str, rows: list[int]) -> None:
        """Only noted for this batch's flush, which tells Redis (op 11): a mark by row kept
        here would only grow."""
        self._real_rows.setdefault(entity, set()).update(rows)

    def applied(self, replica: str) -> int:
        value = self.redis.get(f"{self.prefix}:applied:{replica}")
        return int(value) if value else 0

    def sync_clock(self) -> None:
        value = self.redis.get(f"{self.prefix}:watermark")
        if value is not None:
            self.watermark = max(self.watermark, int(float(value)))

    # ------------------------------------------------------------------ reads

    def _read_args(self, entity: str, keys: list[str], tables: list[Table]) -> list:
        table_keys = [self._key(table, key) for table in tables for key in keys]
        kinds = [2 if isinstance(table, SequenceTable) else 1 for table in tables for _ in keys]
        args = [self._members(entity), msgpack.packb(keys), msgpack.packb(table_keys), f"{self.prefix}:watermark",
                msgpack.packb(kinds)]
        if entity in expiry.READ_TTL_MS:
            args.append(self._read_only(entity))
        return args

    def _decode(self, keys: list[str], tables: list[Table], reply) -> tuple[list, list, list]:
        """(presence scores, per table the hashes of the keys: dicts, or for window tables
        the list of slot blobs, and the read-only scores: None where real or not asked)."""
        clock, scores, flats, reading = reply
        if clock:
            self.watermark = max(self.watermark, int(float(clock)))
        hashes = []
        for t, table in enumerate(tables):
            chunk = flats[t * len(keys):(t + 1) * len(keys)]
            if isinstance(table, WindowTable):
                hashes.append([flat[1::2] for flat in chunk])
            elif isinstance(table, SequenceTable):
                hashes.append(chunk)  # list items, newest first
            else:
                hashes.append([dict(zip(flat[::2], flat[1::2])) for flat in chunk])
        return scores, hashes, reading or [None] * len(keys)

    def _tables_for(self, names: list[str]) -> list[Table]:
        tables: list[Table] = []
        for name in names:
            table = self.reads[name].table
            if table not in tables:
                tables.append(table)
        return tables

    def read(self, entity: str, keys: list[str], names: list[str], as_of: int | None = None) -> FeatureBlock:
        tables = self._tables_for(names)
        reply = self._read(args=self._read_args(entity, keys, tables))
        return self._answer(entity, keys, names, tables, *self._decode(keys, tables, reply), as_of)

    async def read_async(self, entity: str, keys: list[str], names: list[str],
                         as_of: int | None = None) -> FeatureBlock:
        """The same as read(), without holding the event loop for the round trip."""
        if self._read_async is None:
            raise RuntimeError("this store was made without an asyncio Redis client")
        tables = self._tables_for(names)
        reply = await self._read_async(args=self._read_args(entity, keys, tables))
        return self._answer(entity, keys, names, tables, *self._decode(keys, tables, reply), as_of)

    def _answer(self, entity: str, keys: list[str], names: list[str], tables: list[Table], scores: list,
                hashes: list, reading: list, as_of: int | None) -> FeatureBlock:
        as_of = self.watermark if as_of is None else as_of
        exists = self._alive(entity, scores, reading, as_of)
        rows = np.where(np.array(exists, dtype=bool), np.arange(len(keys)), -1).astype(np.int64)
        by_table = {id(table): hashes[t] for t, table in enumerate(tables)}
        scalar = [n for n in names if self.features[n].aggregation != "sequence"]
        if scalar:
            local = {id(t): materialize(t, by_table[id(t)]) for t in tables if not isinstance(t, SequenceTable)}
            plan, layout = self._build_plan(scalar, lambda name: local[id(self.reads[name].table)])
            values, missing = plan.gather(rows, as_of)
        else:
            values, missing, layout = np.zeros((len(keys), 0), np.float32), np.zeros((len(keys), 0), np.uint8), []
        sequences = {}
        for name in names:
            if self.features[name].aggregation == "sequence":
                table = self.reads[name].table
                sequences[name] = self._sequence(by_table[id(table)], exists, table.length, as_of, table.length)
        return FeatureBlock(values, missing, layout, sequences)

    @staticmethod
    def _sequence(lists: list[list[bytes]], exists: list[bool], length: int, as_of: int, k: int):
        flat, counts = [], np.zeros(len(lists), dtype=np.int64)
        for r, (present, entries) in enumerate(zip(exists, lists)):
            if not present:
                continue
            taken = 0
            for entry in entries:
                if taken == k:
                    break
                ts, item = entry.split(b":", 1)
                if int(ts) > as_of:
                    continue
                flat.append(item.decode())
                taken += 1
            counts[r] = taken
        return flat, counts

    def _alive(self, entity: str, scores: list, reading: list, as_of: int) -> list[bool]:
        """Seen at all, and (for entities with a TTL) seen within it before as_of, and (for one
        no real event named) seen within expiry.READ_TTL_MS: expiry.forgotten's rule."""
        ttl = ENTITY_TTL_MS[entity]
        floor = None if ttl is None else as_of - ttl
        read_ttl = expiry.READ_TTL_MS.get(entity)
        read_floor = None if read_ttl is None else as_of - read_ttl
        return [score is not None and (floor is None or float(score) > floor)
                and (read is None or read_floor is None or float(read) > read_floor)
                for score, read in zip(scores, reading)]

    def gather(self, entity: str, keys: list[str], names: list[str], as_of: int | None = None):
        block = self.read(entity, keys, names, as_of)
        return block.values, block.missing, block.layout

    def sequences_flat(self, entity: str, keys: list[str], name: str, as_of: int | None = None,
                       k: int | None = None) -> tuple[list[str], np.ndarray]:
        flat, counts = self.read(entity, keys, [name], as_of).sequences[name]
        if k is not None:
            return self.sequences_flat_cut(flat, counts, k)
        return flat, counts

    @staticmethod
    def sequences_flat_cut(flat: list[str], counts: np.ndarray, k: int) -> tuple[list[str], np.ndarray]:
        out, start, cut = [], 0, np.minimum(counts, k)
        for count, keep in zip(counts.tolist(), cut.tolist()):
            out.extend(flat[start:start + keep])
            start += count
        return out, cut

    def evict(self, min_share: float = 0.25) -> dict[str, int]:
        """Forget entity keys past their TTL in Redis's presence sets (their table keys expire
        on their own), and delete read-created users past expiry.READ_TTL_MS with their keys
        (theirs expire by the wall clock, a later one than the store's when the stream is
        replayed). Nothing in process to reclaim: the indexes bound themselves (apply)."""
        dropped = {}
        for entity, ttl in ENTITY_TTL_MS.items():
            if ttl is not None:
                dropped[entity] = int(self.redis.zremrangebyscore(self._members(entity), "-inf",
                                                                  self.watermark - ttl))
        for entity, read_ttl in expiry.READ_TTL_MS.items():
            prefixes = msgpack.packb([self._key(t, "") for t in self.tables if t.entity == entity])
            args = [self._members(entity), self._read_only(entity), self.watermark - read_ttl, FORGET_BATCH, prefixes]
            forgotten = 0
            while True:
                taken = int(self._forget(args=args))
                forgotten += taken
                if taken < FORGET_BATCH:
                    break
            if forgotten:  # as the embedded store, which names only the entities it dropped
                dropped[entity] = forgotten
        return dropped

    def nbytes(self) -> int:
        info = self.redis.info("memory")
        return int(info.get("used_memory", 0))


def _shape_digest(table: Table) -> str:
    shape = [type(table).__name__, table.entity, getattr(table, "window", ""), getattr(table, "bucket_ms", 0),
             getattr(table, "buckets", 0), getattr(table, "columns", 0), getattr(table, "length", 0),
             getattr(table, "SLOTS", 0)]
    if isinstance(table, LifetimeTable):
        shape.append(table.aggregation)
    return hashlib.blake2b(repr(shape).encode(), digest_size=3).hexdigest()


class RedisDedup:
    """Event ids remembered in Redis (SET NX with the horizon as expiry), so replicas agree on
    what is a duplicate. One script call per batch. An id marked here stays in this replica's
    pending set until its batch is applied (the apply script takes it out with the replica's
    position); `release_unlogged` at the replica's start unmarks what a crash left pending
    and never logged. A batch meeting an id still pending anywhere raises EventsInFlight."""

    def __init__(self, client, horizon_ms: int, prefix: str = "hz", replica: str = "", async_client=None) -> None:
        self.redis = client
        self.async_redis = async_client
        self.horizon_ms = horizon_ms
        self.prefix = prefix
        self.pending_key = f"{prefix}:pending:{replica}"
        self._check = client.register_script(_DEDUP_SCRIPT)
        self._check_async = async_client.register_script(_DEDUP_SCRIPT) if async_client is not None else None

    def check_and_add(self, hashes: np.ndarray, ts: np.ndarray, watermark: int) -> np.ndarray:
        if not len(hashes):
            return np.zeros(0, dtype=np.bool_)
        return self._answer(self._check(args=self._args(hashes)))

    async def check_and_add_async(self, hashes: np.ndarray, ts: np.ndarray, watermark: int) -> np.ndarray:
        if not len(hashes) or self._check_async is None:
            return self.check_and_add(hashes, ts, watermark)
        return self._answer(await self._check_async(args=self._args(hashes)))

    def _args(self, hashes: np.ndarray) -> list:
        return [msgpack.packb([str(h) for h in hashes.tolist()]), self.horizon_ms, self.prefix, self.pending_key]

    @staticmethod
    def _answer(reply: list[int]) -> np.ndarray:
        if reply and reply[0] == -1:
            raise EventsInFlight([i - 1 for i in reply[1:]])
        return np.array(reply, dtype=np.bool_)

    def forget(self, hashes: np.ndarray, watermark: int) -> None:
        if len(hashes):
            self._unmarking(self.redis.pipeline(transaction=True), hashes).execute()

    async def forget_async(self, hashes: np.ndarray, watermark: int) -> None:
        if len(hashes):
            await self._unmarking(self.async_redis.pipeline(transaction=True), hashes).execute()

    def _unmarking(self, pipe, hashes: np.ndarray):
        names = [str(h) for h in hashes.tolist()]
        pipe.delete(*(f"{self.prefix}:id:{h}" for h in names))
        pipe.srem(self.pending_key, *names)
        return pipe

    def release_unlogged(self, logged: set[str]) -> int:
        """At start, after the log's tail was replayed: unmark the pending ids whose batch never
        reached the log (`logged`: the hashes of the tail's ids); returns how many."""
        pending = {member.decode() if isinstance(member, bytes) else member
                   for member in self.redis.smembers(self.pending_key)}
        lost = sorted(pending - logged)
        pipe = self.redis.pipeline(transaction=True)
        if lost:
            pipe.delete(*(f"{self.prefix}:id:{h}" for h in lost))
        pipe.delete(self.pending_key)
        pipe.execute()
        return len(lost)

    def state(self) -> dict:
        return {}

    def nbytes(self) -> int:
        return 0
