"""When the online store forgets an entity.

Entities with a TTL (definitions.ENTITY_TTL_MS) are forgotten once not seen for that long.
Users and products have none: a shopper's history is kept however long they stay away. But
a read creates state too: every Recommend or Search for a new user_id logs what it served
(recommendation_shown, search), and that event makes a user row. So a user whose every event
is one a read logs ("read-created") is forgotten after READ_TTL_MS without an event, the
longest window plus a margin; one real event (a view, a purchase, an order ...) makes the
row a shopper's, kept as before.

A search event sent by a shop's own front end counts as read-logged too: it only feeds the
user's first-seen time, which is all a forgotten row loses.

Reads answer a forgotten entity as unknown at once (`forgotten`); its row is reclaimed by the
store's eviction (FeatureStore.evict, run with every snapshot).
"""
from __future__ import annotations

import numpy as np

from .definitions import ENTITY_TTL_MS, WINDOWS

DAY_MS = 86_400_000
# Event types a served read logs (surfaces/served_log.py): alone, they keep no entity alive.
READ_EVENTS = frozenset({"recommendation_shown", "search"})
# The longest window a read-logged event could ever count in: the month. The customer's quarter
# (90d) counts purchases only, which no read logs, so it does not keep read-created rows.
_LONGEST_WINDOW_MS = WINDOWS["30d"][0] * WINDOWS["30d"][1]
# Entities kept for good once a real event names them, forgotten after this if none ever did.
READ_TTL_MS: dict[str, int] = {"user": _LONGEST_WINDOW_MS + DAY_MS}


def expires(entity: str) -> bool:
    return ENTITY_TTL_MS[entity] is not None or entity in READ_TTL_MS


def grown(flags: np.ndarray, size: int) -> np.ndarray:
    """`flags` (a row has had a real event) long enough for `size` rows, new rows unset."""
    if flags.shape[0] >= size:
        return flags
    out = np.zeros(max(size, 2 * flags.shape[0], 64), dtype=np.uint8)
    out[: flags.shape[0]] = flags
    return out


def forgotten(entity: str, rows: np.ndarray, seen: np.ndarray, real: np.ndarray | None, as_of: int) -> np.ndarray:
    """A mask over `rows` (valid row numbers) of the entities forgotten at `as_of`: `seen` is
    the newest event time by row, `real` whether a row has had a real event (both as long as
    the entity index: the store grows them with it)."""
    ttl = ENTITY_TTL_MS[entity]
    if ttl is not None:
        return seen[rows] <= as_of - ttl
    read_ttl = READ_TTL_MS.get(entity)
    if read_ttl is None or real is None:
        return np.zeros(len(rows), dtype=bool)
    return (seen[rows] <= as_of - read_ttl) & (real[rows] == 0)
