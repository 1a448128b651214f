"""What each customer did after a cut: the labels the customer models learn from and are judged on."""
from __future__ import annotations

import numpy as np

from hanzo.server.customers.rfm import Summary


def outcomes(users: np.ndarray, days: np.ndarray, spend: np.ndarray, summary: Summary, start: int,
             end: int) -> tuple[np.ndarray, np.ndarray]:
    """Per summarized customer: purchase days and spend in (start, end]; customers first seen after
    `start` are not in the summary and their purchases are left out."""
    inside = (days > start) & (days <= end)
    index = {u: i for i, u in enumerate(summary.user_ids.tolist())}
    rows = np.array([index.get(u, -1) for u in users[inside].tolist()], np.int64)
    known = rows >= 0
    rows, day, amount = rows[known], days[inside][known], spend[inside][known]
    pairs = np.unique(rows * (1 << 32) + (day - start), return_index=False)
    counts = np.bincount((pairs >> 32).astype(np.int64), minlength=len(summary)).astype(np.float64)
    return counts, np.bincount(rows, weights=amount, minlength=len(summary))
