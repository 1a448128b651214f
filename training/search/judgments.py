"""Graded relevance judgments (query_id,query,product_id,relevance), split by query, and the
graded NDCG the search issue measures with: gain 2^(rel - lowest grade) - 1, unjudged
products gain 0, the ideal ranking taken from the query's judged products."""
from __future__ import annotations

import csv
import hashlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hanzo.server.search.text import words


@dataclass
class JudgedQuery:
    query: str
    judgments: dict[str, float]  # product_id -> relevance (raters averaged)


@dataclass
class Judgments:
    queries: list[JudgedQuery]
    lowest: float  # the scale's lowest grade (gain 0)

    @classmethod
    def read(cls, path: Path) -> "Judgments":
        """One entry per distinct normalised query text (the same text under two query ids
        counts once, its judgments averaged), so a split by query cannot leak."""
        by_query: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        lowest = float("inf")
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                relevance = float(row["relevance"])
                lowest = min(lowest, relevance)
                by_query[" ".join(words(row["query"]))][row["product_id"]].append(relevance)
        queries = [JudgedQuery(q, {p: float(np.mean(r)) for p, r in products.items()})
                   for q, products in sorted(by_query.items()) if q]
        return cls(queries, 1.0 if lowest >= 1.0 else lowest)

    def split(self, dev_share: float = 0.2, seed: int = 0) -> tuple["Judgments", "Judgments"]:
        """(train, dev) by a hash of the query text: stable as the file grows."""
        train, dev = [], []
        for q in self.queries:
            digest = int(hashlib.sha1(f"{seed}:{q.query}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
            (dev if digest < dev_share else train).append(q)
        return Judgments(train, self.lowest), Judgments(dev, self.lowest)

    def gain(self, relevance: float) -> float:
        return 2.0 ** (relevance - self.lowest) - 1.0

