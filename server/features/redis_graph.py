"""The fraud network kept in Redis, for replicas that share one store: the same union-find,
tallies and blocklist as graph.EntityGraph, run by Lua (redis_graph.lua). Updates go out with
the feature tables' own script call (operations 9 and 10 of redis_apply.lua), so a batch's
graph changes and table changes land together, with the replica's replay marker."""
from __future__ import annotations

from pathlib import Path

import msgpack
import numpy as np

from .graph import READ_COLUMNS, order_nodes

LIBRARY = Path(__file__).with_name("redis_graph.lua").read_text()
_READ = LIBRARY + Path(__file__).with_name("redis_graph_read.lua").read_text()


class RedisEntityGraph:
    shared = True  # held in Redis: replicas catching up must not apply what it already holds

    def __init__(self, client, prefix: str = "hz", async_client=None,
                 chargeback_horizon_ms: int = 180 * 86_400_000) -> None:
        self.prefix = prefix
        self.horizon_ms = chargeback_horizon_ms
        self._read = client.register_script(_READ)
        self._read_async = async_client.register_script(_READ) if async_client is not None else None
        self._ops: list[list] = []

    def apply(self, orders: list[dict], chargebacks: list[dict], watermark: int) -> None:
        """Buffered until the store's next flush; orders first, as the embedded graph does."""
        for record in orders:
            order_id = record["payload"].get("order_id") or ""
            self._ops.append([9, self.prefix, order_id, record["timestamp"], order_nodes(record),
                              2 * self.horizon_ms])
        for record in chargebacks:
            order_id = record["payload"].get("order_id")
            if order_id:
                self._ops.append([10, self.prefix, order_id, record["timestamp"], self.horizon_ms])

    def take_ops(self) -> list[list]:
        ops, self._ops = self._ops, []
        return ops

    def _args(self, orders: list[dict]) -> list:
        return [self.prefix, msgpack.packb([order_nodes(r) for r in orders], use_bin_type=True)]

    @staticmethod
    def _answer(reply, n: int) -> np.ndarray:
        out = np.asarray(reply, np.float32).reshape(n, len(READ_COLUMNS)) if n else \
            np.zeros((0, len(READ_COLUMNS)), np.float32)
        return out

    def tallies(self, orders: list[dict]) -> np.ndarray:
        return self._answer(self._read(args=self._args(orders)), len(orders))

    async def tallies_async(self, orders: list[dict]) -> np.ndarray:
        if self._read_async is None:
            return self.tallies(orders)
        return self._answer(await self._read_async(args=self._args(orders)), len(orders))
