"""Query understanding measured on real queries: the zero-result rate of a query set against a
catalog before and after spelling correction (and synonym expansion), and how many queries
the corrector changes, with a sample to read for over-correction.

    python -m hanzo.training.search.query_eval [data_dir]   # data_dir: ../shared/data
"""
from __future__ import annotations

import csv
import random
import sys
from pathlib import Path
from typing import Collection, Iterable, Sequence

from hanzo.server.features.formats import read_catalog
from hanzo.server.search.spelling import SpellingCorrector
from hanzo.server.search.synonyms import Synonyms
from hanzo.server.search.text import terms, words
from hanzo.training.simulator.search import SYNONYMS

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def zero_result_rate(queries: Sequence[str], known_terms: Collection[str], corrector: SpellingCorrector | None = None,
                     synonyms: Synonyms | None = None) -> float:
    """Share of queries none of whose terms occurs in the catalog: what OR retrieval (BM25)
    answers with nothing, after the corrector's rewrite and the synonyms' expansions."""
    empty = 0
    for query in queries:
        text = corrector.correct(query)[0] if corrector is not None else query
        query_terms = terms(text)
        expanded = [t for t, _ in synonyms.expand(query_terms)] if synonyms is not None else query_terms
        empty += not any(t in known_terms for t in expanded)
    return empty / len(queries) if queries else 0.0


def catalog_texts(products: Iterable[dict]) -> list[str]:
    """Title and description: the fields the homedepot and WANDS catalogs have."""
    return [f"{p.get('title') or ''} {p.get('description') or ''}" for p in products]


def read_wands_queries(path: Path) -> list[str]:
    with open(path, newline="") as handle:
        return [row["query"] for row in csv.DictReader(handle, delimiter="\t")]


def read_judged_queries(path: Path) -> list[str]:
    """The distinct queries of a judgments file (query_id,query,product_id,relevance),
    normalised to their words so the same text under two ids counts once."""
    with open(path, newline="") as handle:
        return sorted({" ".join(words(row["query"])) for row in csv.DictReader(handle)} - {""})


def changed_queries(queries: Iterable[str], corrector: SpellingCorrector) -> list[tuple[str, str]]:
    """(query, corrected) for each query the corrector rewrites."""
    out = []
    for query in queries:
        corrected, changes = corrector.correct(query)
        if changes:
            out.append((query, corrected))
    return out


def correction_agreement(judgments: Path, products: Iterable[dict], corrector: SpellingCorrector,
                         min_relevance: float = 2.0) -> tuple[int, int, list[tuple[str, str, bool]]]:
    """How often a change agrees with the raters: (agreeing, changes, [(typed, correction,
    agrees)]), a change agreeing when a term of its correction is in the title or
    description of a product judged relevant (mean grade >= min_relevance) to the query. A
    lower bound on the corrector's precision: a right correction can still miss the judged
    products' words ("flor" -> "floor" against "Flooring")."""
    text = {p["product_id"]: set(terms(t)) for p, t in zip(products, catalog_texts(products))}
    relevant: dict[str, set[str]] = {}
    with open(judgments, newline="") as handle:
        for row in csv.DictReader(handle):
            if float(row["relevance"]) >= min_relevance:
                query = " ".join(words(row["query"]))
                relevant.setdefault(query, set()).update(text.get(row["product_id"], ()))
    found = []
    for query, judged_terms in sorted(relevant.items()):
        for typed, correction in corrector.correct(query)[1]:
            found.append((typed, correction, any(t in judged_terms for t in terms(correction))))
    return sum(agrees for *_, agrees in found), len(found), found


def main(data: Path = DATA) -> None:
    products = read_catalog(data / "homedepot" / "catalog.jsonl")
    texts = catalog_texts(products)
    corrector = SpellingCorrector.from_texts(texts)
    known = {t for text in texts for t in terms(text)}
    # No search log comes with these catalogs to learn from: the configured list stands in,
    # the simulator's pairs (sofa/couch, area rug/carpet, bookshelf/bookcase, ...).
    synonyms = Synonyms.from_pairs(SYNONYMS.items())
    wands = read_wands_queries(data / "wands_queries" / "query.csv")
    print(f"WANDS: {len(wands)} queries against the homedepot catalog; zero-result rate "
          f"{zero_result_rate(wands, known):.4f} as typed, {zero_result_rate(wands, known, corrector):.4f} "
          f"corrected, {zero_result_rate(wands, known, corrector, synonyms):.4f} corrected and expanded")
    changed = changed_queries(wands, corrector)
    print(f"  {len(changed)} queries changed, e.g.:")
    for query, corrected in changed[:15]:
        print(f"    {query!r} -> {corrected!r}")
    judged = read_judged_queries(data / "homedepot" / "judgments.csv")
    changed = changed_queries(judged, corrector)
    agree, total, _ = correction_agreement(data / "homedepot" / "judgments.csv", products, corrector)
    print(f"homedepot judgments: {len(changed)} of {len(judged)} distinct queries changed; zero-result rate "
          f"{zero_result_rate(judged, known):.4f} as typed, "
          f"{zero_result_rate(judged, known, corrector):.4f} corrected; "
          f"{agree} of {total} changes put a word of a product judged relevant into the query")
    for query, corrected in random.Random(0).sample(changed, min(30, len(changed))):
        print(f"    {query!r} -> {corrected!r}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DATA)
