"""Query expansion with synonyms: a configured list ("sofa" = "couch", phrases allowed:
"fry pan" = "frying pan") merged with pairs learned from what shoppers click and buy after a
search (training/search/synonym_learning.py). Everything is kept as index terms (`terms()`), so
"sofas" expands like "sofa"."""
from __future__ import annotations

from typing import Iterable, Mapping

from .text import terms

WEIGHT = 0.5  # an expansion counts half a typed term: it widens recall without outranking


def _phrase(text: str) -> str:
    return " ".join(terms(text))


class Synonyms:
    """Key phrase -> {expansion phrase: weight}, both as index terms joined by spaces
    ("frying pan" -> {"fry pan": 0.5}); `from_pairs` normalises typed text to that form."""

    def __init__(self, table: Mapping[str, Iterable[tuple[str, float]]] | None = None) -> None:
        self.table: dict[str, dict[str, float]] = {}
        self.longest = 0  # words in the longest key: how far expand() looks for phrases
        for key, expansions in (table or {}).items():
            for phrase, weight in expansions:
                self.add(key, phrase, weight)

    def add(self, key: str, phrase: str, weight: float) -> None:
        """One direction, both sides already index terms joined by spaces."""
        if key and phrase and key != phrase:
            known = self.table.setdefault(key, {})
            known[phrase] = max(weight, known.get(phrase, 0.0))
            self.longest = max(self.longest, key.count(" ") + 1)

    def add_pair(self, a: str, b: str, weight: float = WEIGHT) -> None:
        """Symmetric: each side expands to the other."""
        self.add(_phrase(a), _phrase(b), weight)
        self.add(_phrase(b), _phrase(a), weight)

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]], weight: float = WEIGHT) -> "Synonyms":
        synonyms = cls()
        for a, b in pairs:
            synonyms.add_pair(a, b, weight)
        return synonyms

    def merge(self, other: "Synonyms") -> "Synonyms":
        """Both tables in one; a pair in both keeps the larger weight."""
        merged = Synonyms()
        for source in (self, other):
            for key, expansions in source.table.items():
                for phrase, weight in expansions.items():
                    merged.add(key, phrase, weight)
        return merged

    def pairs(self) -> list[tuple[str, str, float]]:
        """Each pair once, (a, b, weight) with a < b and its larger weight, sorted."""
        found: dict[tuple[str, str], float] = {}
        for key, expansions in self.table.items():
            for phrase, weight in expansions.items():
                pair = (min(key, phrase), max(key, phrase))
                found[pair] = max(weight, found.get(pair, 0.0))
        return sorted((a, b, w) for (a, b), w in found.items())

    def expand(self, query_terms: list[str]) -> list[tuple[str, float]]:
        """The query's terms at weight 1.0, then the terms of the expansions of every phrase
        in the query (longest phrases first) at their weight; each term once, at its largest
        weight."""
        weights: dict[str, float] = dict.fromkeys(query_terms, 1.0)
        for n in range(min(self.longest, len(query_terms)), 0, -1):
            for i in range(len(query_terms) - n + 1):
                for phrase, weight in self.table.get(" ".join(query_terms[i:i + n]), {}).items():
                    for term in phrase.split():
                        if weights.get(term, 0.0) < weight:
                            weights[term] = weight
        return list(weights.items())
