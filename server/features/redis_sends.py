"""The Redis writes of the batches a replica has logged, sent in log order and each one once.

Each batch goes as one call of the apply script: its feature updates, its catalogue feed entry
and the log position it brings the replica to, atomically, guarded by that position (a call
whose answer was lost with the connection is sent again and skipped by Redis if it had
arrived). A call that fails stays first in line, and every later one waits behind it, for the
next send: Redis away never reorders a replica's batches, nor drops one the log holds. The
server sends from the event loop with the asyncio client (one sender at a time); bulk loads
and the replay at start send in their own thread, never while the server does."""
from __future__ import annotations

import asyncio


class OrderedSends:
    def __init__(self, client, async_client, script: str) -> None:
        self.redis = client
        self.async_redis = async_client
        self._script = client.register_script(script)
        self._script_async = async_client.register_script(script) if async_client is not None else None
        self._queue: list[list] = []  # the apply script's arguments, one batch each
        self._sending: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self.skipped = 0  # calls Redis had already applied (their first answer was lost)

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, args: list) -> None:
        self._queue.append(args)

    def send(self) -> None:
        """Everything queued, in order, blocking; the first failure is raised."""
        while self._queue:
            self._sent(self._script(args=self._queue[0]))

    async def send_async(self) -> None:
        """The same without blocking the event loop; callers queue in turn behind one sender."""
        if self._script_async is None:
            self.send()
            return
        loop = asyncio.get_running_loop()
        if self._sending is None or self._sending[0] is not loop:
            self._sending = (loop, asyncio.Lock())
        async with self._sending[1]:
            while self._queue:
                self._sent(await self._script_async(args=self._queue[0]))

    def _sent(self, reply: int) -> None:
        self._queue.pop(0)
        if reply == -1:
            self.skipped += 1
