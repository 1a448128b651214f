"""Text into terms, one way for the index, the queries, the spelling vocabulary and the
re-ranker: lower case, runs of letters and digits (fractions such as 1/2 kept whole), and a
light plural stemmer, so "brackets" finds "bracket" without a dictionary."""
from __future__ import annotations

import re

_TERM = re.compile(r"\d+/\d+|[a-z0-9]+")
# Plural endings that are not plurals: glass, bus, chassis, cactus.
_KEEP = ("ss", "us", "is")


def stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(_KEEP) and not word[-2].isdigit():
        return word[:-1]
    return word


def words(text: str) -> list[str]:
    """Lower-cased words as typed (what spelling correction looks at)."""
    return _TERM.findall(text.lower())


def terms(text: str) -> list[str]:
    """Index terms: the words, stemmed."""
    return [stem(w) for w in _TERM.findall(text.lower())]


def product_text(product: dict) -> str:
    """What the lexical index and the re-ranker read of a catalog record."""
    category = product.get("category") or []
    parts = [product.get("title") or "", " ".join(category) if isinstance(category, list) else str(category),
             product.get("description") or ""]
    attributes = product.get("attributes") or {}
    if isinstance(attributes, dict):
        parts.extend(f"{k} {v}" for k, v in attributes.items() if isinstance(v, (str, int, float)))
    return " ".join(p for p in parts if p)
