"""The Redis writes of the batches a replica has logged, sent in log order and each one once.

Each batch's feature updates go as one call of the apply script, guarded by the log position
it brings the replica to (a call whose answer was lost with the connection is sent again and
skipped by Redis if it had arrived); its catalogue changes go to the catalogue feed after it.
A write that fails stays first in line, and every later one waits behind it, for the next
send: Redis away never reorders a replica's batches, nor drops one the log holds. The server
sends from the event loop with the asyncio client (one sender at a time); bulk loads and the
replay at start send in their own thread."""
from __future__ import annotations

import asyncio
from typing import Any


class OrderedSends:
    def __init__(self, client, async_client, script: str) -> None:
        self.redis = client
        self.async_redis = async_client
        self._script = client.register_script(script)
        self._script_async = async_client.register_script(script) if async_client is not None else None
        self._queue: list[tuple[str, Any]] = []  # ("apply", script args) | ("feed", (key, fields, maxlen))
        self._sending: asyncio.Lock | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def add_apply(self, args: list) -> None:
        self._queue.append(("apply", args))

    def add_feed(self, key: str, fields: dict, maxlen: int) -> None:
        self._queue.append(("feed", (key, fields, maxlen)))

    def send(self) -> None:
        """Everything queued, in order, blocking; the first failure is raised."""
        while self._queue:
            kind, args = self._queue[0]
            if kind == "apply":
                self._script(args=args)
            else:
                key, fields, maxlen = args
                self.redis.xadd(key, fields, maxlen=maxlen, approximate=True)
            self._queue.pop(0)

    async def send_async(self) -> None:
        """The same without blocking the event loop; callers queue in turn behind one sender."""
        if self._script_async is None:
            self.send()
            return
        if self._sending is None:
            self._sending = asyncio.Lock()
        async with self._sending:
            while self._queue:
                kind, args = self._queue[0]
                if kind == "apply":
                    await self._script_async(args=args)
                else:
                    key, fields, maxlen = args
                    await self.async_redis.xadd(key, fields, maxlen=maxlen, approximate=True)
                self._queue.pop(0)
