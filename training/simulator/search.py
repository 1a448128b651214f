"""Simulated search: queries a shopper types for a product they want (with typos and
synonyms), the shop's existing ranker that orders results, and clicks shaped by position
bias (the truth the search issue's bias estimate is checked against)."""
from __future__ import annotations

import re
from collections import defaultdict

import numpy as np

from .catalog import Catalog

SYNONYMS = {"sofa": "couch", "earbuds": "earphones", "headphones": "headset", "frying pan": "fry pan",
            "electric kettle": "water boiler", "area rug": "carpet", "bookshelf": "bookcase",
            "sneakers": "trainers", "jigsaw puzzle": "puzzle", "potting soil": "compost",
            "phone case": "phone cover", "wall mirror": "mirror", "blender": "smoothie maker",
            "coffee mug": "cup", "power bank": "portable charger"}
EXAMINE_ETA = 0.9  # P(examine rank k) = 1 / k ** EXAMINE_ETA, k from 1
RESULTS_SHOWN = 10
_TOKEN = re.compile(r"[a-z0-9&]+")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def examine_probability(rank: int) -> float:
    """The true position bias: the chance a shopper looks at the result at `rank` (from 1)."""
    return 1.0 / rank ** EXAMINE_ETA


class SearchEngine:
    """The shop's search before Hanzo: title-token overlap plus popularity, a little noise."""

    def __init__(self, rng: np.random.Generator, catalog: Catalog) -> None:
        self.rng = rng
        self.catalog = catalog
        self.index: dict[str, list[int]] = defaultdict(list)
        for i, title in enumerate(catalog.titles):
            for token in set(tokens(title) + tokens(" ".join(catalog.categories[i]))):
                self.index[token].append(i)

    def query_for(self, i: int) -> str:
        """What a shopper who wants product i types."""
        catalog, rng = self.catalog, self.rng
        noun = catalog.noun[i]
        if noun in SYNONYMS and rng.random() < 0.12:
            noun = SYNONYMS[noun]
        words = [noun]
        roll = rng.random()
        if roll < 0.25:
            words.insert(0, catalog.color[i])
        elif roll < 0.4:
            words.insert(0, catalog.brand[i].lower())
        query = " ".join(words)
        if rng.random() < 0.08:
            query = self._typo(query)
        return query

    def _typo(self, query: str) -> str:
        words = query.split()
        long_words = [k for k, w in enumerate(words) if len(w) >= 5]
        if not long_words:
            return query
        k = long_words[int(self.rng.integers(len(long_words)))]
        w = words[k]
        j = int(self.rng.integers(1, len(w) - 1))
        words[k] = w[:j] + w[j + 1:] if self.rng.random() < 0.5 else w[:j] + w[j + 1] + w[j] + w[j + 2:]
        return " ".join(words)

    def results(self, query: str, launched: np.ndarray, popularity: np.ndarray) -> list[int]:
        scores: dict[int, float] = defaultdict(float)
        for token in tokens(query):
            for i in self.index.get(token, ()):
                if launched[i]:
                    scores[i] += 1.0
        if not scores:
            return []
        ids = np.fromiter(scores.keys(), dtype=np.int64)
        values = np.fromiter(scores.values(), dtype=float) + 0.3 * np.log1p(popularity[ids]) \
            + 0.5 * self.rng.standard_normal(len(ids))
        return [int(i) for i in ids[np.argsort(-values)[:RESULTS_SHOWN]]]
