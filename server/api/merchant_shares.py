"""Merchants' shares of the event loop: while its thread is busier than `merchant_cpu_target`
and more than one merchant is calling, a share of the calls of the merchants spending clearly
more than an even share of the handlers' time is refused RESOURCE_EXHAUSTED (reason
`merchant_cpu`).

Why: within the server's capacity nothing waits at an admission gate, yet every call queues on
the one event loop behind the others; a shop bursting to most of the capacity makes every other
shop's calls wait behind its own, and their latency grows with the loop's load long before
anything is refused. Turning away part of the heaviest shop's calls keeps the loop's load near
the target, where the others' latency stays close to what it is without the burst. A lone
merchant (one shop, or the unnamed one) is never refused by this, whatever the load, nor are
the calls of RPCs that name no merchant (KServe's), which are not counted.

Each window (saturation.Saturation's, a few tens of milliseconds) the handlers' time per
merchant (wall time: a call waiting on the disk or on Redis counts too) is folded into a moving
average; a merchant whose average share is above HEAVY / k (k merchants with a noticeable
share) is heavy, so merchants with about even loads are none of them heavy. The refused share
moves by `gain` times the distance of the loop's utilisation from the target, as
saturation.py's does for everyone's calls; the loop thread's own time, so that work in other
threads (a model training, a snapshot) turns no merchant away."""
from __future__ import annotations

import random

# Weight of the newest window in each merchant's share of the handlers' time.
SHARE_WEIGHT = 0.2
# A merchant whose share falls below this has stopped calling, for the count of merchants.
NOTICEABLE = 0.01
# Heavy: a share above this many times an even one.
HEAVY = 1.25


class MerchantShares:
    def __init__(self, target: float, gain: float, max_shed: float) -> None:
        self.target, self.gain, self.max_shed = target, gain, max_shed
        self.shed = 0.0  # the share of a heavy merchant's new calls refused
        self.heavy: frozenset[bytes] = frozenset()
        self.windows_over = 0
        self._spent: dict[bytes, int] = {}  # handlers' time this window, ns, per merchant
        self._share: dict[bytes, float] = {}

    def spent(self, merchant: bytes | None, elapsed_ns: int) -> None:
        """A call of `merchant` (None: an RPC that names none) took `elapsed_ns` in its handler."""
        if merchant is not None:
            self._spent[merchant] = self._spent.get(merchant, 0) + elapsed_ns

    def refuses(self, merchant: bytes | None) -> bool:
        return self.shed > 0.0 and merchant in self.heavy and random.random() < self.shed

    def update(self, utilisation: float) -> None:
        """A window ended with the event loop's thread `utilisation` busy (0-1)."""
        spent, self._spent = self._spent, {}
        total = sum(spent.values())
        shares = self._share
        for merchant in set(shares) | set(spent):
            now = spent.get(merchant, 0) / total if total else 0.0
            shares[merchant] = shares.get(merchant, 0.0) + (now - shares.get(merchant, 0.0)) * SHARE_WEIGHT
        for merchant in [m for m, share in shares.items() if share < NOTICEABLE / 10]:
            del shares[merchant]
        active = [m for m, share in shares.items() if share >= NOTICEABLE]
        self.heavy = frozenset(m for m in active if shares[m] > HEAVY / len(active)) if len(active) > 1 else frozenset()
        over = utilisation - self.target if self.heavy else -1.0
        if over > 0:
            self.windows_over += 1
        self.shed = min(self.max_shed, max(0.0, self.shed + self.gain * over))
