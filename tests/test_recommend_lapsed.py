"""A customer back after months: every short window the user tower reads is empty, so its dense
inputs are read as of the day they last bought, the nearest state the tower learned from; a
customer still around, or one who never bought, is read as they are now."""
from __future__ import annotations

import numpy as np

from hanzo.server.surfaces.recommend_inputs import AFFINITY, LIFE, USER_SCALARS, dense_inputs, lapsed_moment

DAY_MS = 86_400_000
NAMES = list(USER_SCALARS) + [AFFINITY] + list(LIFE)


def _purchase(user: str, ms: int, n: int) -> dict:
    return {"event_id": f"e{n}", "event_type": "purchase", "timestamp": ms, "user_id": user, "session_id": f"s{n}",
            "payload": {"product_id": "p1", "amount": 3.0}, "context": {}}


def test_a_lapsed_customer_is_read_as_of_their_last_purchase_day(make_store):
    store = make_store()
    start = 20_000 * DAY_MS
    # as a stream brings them: in time order
    store.apply([_purchase("gone", start + 3_600_000, 1), _purchase("gone", start + DAY_MS, 2)])
    store.apply([_purchase("here", start + 100 * DAY_MS, 3)])
    now = start + 100 * DAY_MS + 60_000
    block = store.read("user", ["gone", "here", "never"], NAMES, now)
    moments = [lapsed_moment(block.values[i:i + 1], block.layout) for i in range(3)]
    assert moments == [start + 2 * DAY_MS - 1, None, None]
    # as of then, the week's purchases are what the tower saw at the customer's last visit
    past = store.read("user", ["gone"], list(USER_SCALARS) + [AFFINITY], moments[0])
    dense = dense_inputs(past.values, past.layout, ["email"])
    assert dense[0, USER_SCALARS.index("user_purchase_count_7d")] == np.float32(np.log1p(2.0))
    assert dense_inputs(block.values[:1], block.layout, ["email"])[0, :len(USER_SCALARS)].sum() == 0
    if hasattr(store, "redis"):  # the windows it reads are never expired by Redis's own clock
        windows = [t for t in store.tables if t.entity == "user" and type(t).__name__ == "WindowTable"]
        assert windows and all(store.redis.pttl(store._key(t, "gone")) == -1 for t in windows
                               if store.redis.exists(store._key(t, "gone")))
