"""Query understanding, one way for serving and training: the spelling correction (the query
as typed when nothing changed), then its terms with their synonym expansions."""
from __future__ import annotations

from .spelling import SpellingCorrector
from .synonyms import Synonyms
from .text import terms


def understand(query: str, corrector: SpellingCorrector, synonyms: Synonyms) -> tuple[str, list[tuple[str, float]]]:
    """(corrected query, weighted terms for BM25)."""
    text, changes = corrector.correct(query)
    corrected = text if changes else query
    return corrected, synonyms.expand(terms(corrected))


class QueryUnderstanding:
    """`understand` with a fixed vocabulary and synonym table (offline, over one catalogue)."""

    def __init__(self, corrector: SpellingCorrector, synonyms: Synonyms) -> None:
        self.corrector = corrector
        self.synonyms = synonyms

    def corrected(self, query: str) -> str:
        return understand(query, self.corrector, self.synonyms)[0]

    def weighted_terms(self, query: str) -> list[tuple[str, float]]:
        return understand(query, self.corrector, self.synonyms)[1]
