"""Which definition of the features Redis's tables were written under. A table's keys carry its
position and shape, so tables written by a server with other feature definitions (another
Hanzo version) are never read as this one's; but a replica starting on them would answer from
empty tables as if its shoppers had never come, and the replica's log would not be replayed
(Redis says it holds it). So a replica refuses to open on another layout, and `hanzo
rebuild-redis` makes the tables again from every replica's log."""
from __future__ import annotations

import hashlib
from typing import Any

PREFIX = "hz"
LAYOUT_KEY = f"{PREFIX}:layout"


class LayoutChanged(OSError):
    """Redis's tables are another definition's (an OSError: what a start reports in one line)."""


def layout_of(table_ids: list[str]) -> str:
    return hashlib.blake2b("|".join(table_ids).encode(), digest_size=8).hexdigest()


def check_layout(client: Any, table_ids: list[str]) -> None:
    """Record this layout in a Redis that holds no tables yet; refuse one whose tables were
    written under another (or before layouts were recorded)."""
    ours = layout_of(table_ids)
    held = client.get(LAYOUT_KEY)
    if held is None:
        if next(client.scan_iter(match=f"{PREFIX}:t*", count=1000), None) is None:
            client.set(LAYOUT_KEY, ours, nx=True)
        # again: a replica starting beside this one may have recorded it and written tables meanwhile
        held = client.get(LAYOUT_KEY) or b"(not recorded)"
    if held.decode() != ours:
        raise LayoutChanged(f"Redis holds feature tables written under other feature definitions (layout "
                            f"{held.decode()}, this server's {ours}: another Hanzo version); stop every replica "
                            "and run `hanzo rebuild-redis --redis-url URL --data-dir DIR` (a --data-dir for every "
                            "replica) to make them again from the event logs")
