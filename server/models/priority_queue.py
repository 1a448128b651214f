"""The dynamic batcher's queue when config.pbtxt sets priority_levels: one FIFO per level, read
highest level first (1 is the highest, as in Triton), behind the few deque operations the
batcher uses, so a batch fills from the most urgent requests before any lower one's."""
from __future__ import annotations

from collections import deque


class LeveledQueue:
    __slots__ = ("_levels", "_size")

    def __init__(self, levels: int) -> None:
        self._levels: list[deque] = [deque() for _ in range(levels)]
        self._size = 0

    def append(self, item) -> None:
        """`item.level` in 1..levels."""
        self._levels[item.level - 1].append(item)
        self._size += 1

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, index: int):
        if index != 0:
            raise IndexError("only the head of a leveled queue is read")
        for level in self._levels:
            if level:
                return level[0]
        raise IndexError("the queue is empty")

    def popleft(self):
        for level in self._levels:
            if level:
                self._size -= 1
                return level.popleft()
        raise IndexError("the queue is empty")

    def drop_done(self) -> int:
        """Take out every request already answered (timed out, cancelled) at any level; returns
        their rows. Run when the queue looks full: a lower level's dead requests would
        otherwise count against the bound while higher levels keep the head busy."""
        dropped = 0
        for i, level in enumerate(self._levels):
            kept = deque(item for item in level if not item.future.done())
            dropped += sum(item.rows for item in level if item.future.done())
            self._size -= len(level) - len(kept)
            self._levels[i] = kept
        return dropped
