"""Synonym pairs learned offline from search logs (co-clicks and purchases after a search),
shipped with a search model version and served by server/search/synonyms.py."""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Iterable

from hanzo.server.search.spelling import SpellingCorrector, distance
from hanzo.server.search.synonyms import WEIGHT, Synonyms
from hanzo.server.search.text import product_text, terms


def learn_synonyms(events: Iterable[dict], catalog: Iterable[dict], corrector: SpellingCorrector | None = None,
                   min_count: int = 3, min_similarity: float = 0.5, max_text_share: float = 0.2,
                   max_together: float = 0.1, top: int = 1, weight: float = WEIGHT) -> Synonyms:
    """Term pairs learned from co-clicks and co-purchases, from canonical events.

    Every (query term, product) a search led to counts: a click on one of its results
    (product_view with context.source "search" and context.search_event_id), and a purchase
    later in the session of a product that search showed or led to a click on (credited to
    the session's latest such search). Each term then has a vector of products its queries
    led to, and two terms are synonyms when those vectors point the same way (cosine at least
    `min_similarity`), with support: each term in `min_count` searches that led somewhere.
    Queries go through `corrector` first, as they will when served: typos then count for
    the word meant instead of each being a rare term of its own that co-clicks by chance.

    What co-clicks alone cannot tell apart is pruned, because a wrong expansion costs ranking
    everywhere the term is typed:
    - a pair is a vocabulary gap, a term the shoppers type but the products they pick do not
      contain (in at most `max_text_share` of its interactions: "couch" on sofas), to a term
      the products do contain. When both terms are in the clicked products' text, lexical
      retrieval already finds them; co-clicks there mean attributes of one product ("black"
      and "sofa"), not words for one thing. Product text comes from `catalog` (records as
      in catalog.jsonl) and catalog_update events; with none, nothing is learned.
    - terms that appear in the same query (in more than `max_together` of the searches of
      the rarer one) are parts of one phrase ("fry" and "pan"), not alternatives;
    - terms at most two edits apart are typos, the spelling corrector's job ("blendr").
    Each gap term keeps its `top` best partners; a pair's weight is `weight` x cosine."""
    text_terms: dict[str, set[str]] = {p["product_id"]: set(terms(product_text(p))) for p in catalog}
    searches: dict[str, tuple[list[str], set[str]]] = {}  # event_id -> (terms, shown and clicked)
    session_searches: dict[str, list[str]] = defaultdict(list)
    led_to: set[tuple[str, str, str]] = set()  # (search event id, product, "click" | "purchase")
    for event in sorted(events, key=lambda e: (e["timestamp"], e["event_id"])):
        kind, payload, context = event["event_type"], event.get("payload") or {}, event.get("context") or {}
        if kind == "catalog_update" and "product_id" in payload:
            text_terms[payload["product_id"]] = set(terms(product_text(payload)))
        elif kind == "search":
            query = payload.get("query") or ""
            query_terms = list(dict.fromkeys(terms(corrector.correct(query)[0] if corrector else query)))
            searches[event["event_id"]] = (query_terms, set(payload.get("product_ids") or ()))
            session_searches[event.get("session_id") or ""].append(event["event_id"])
        elif (kind == "product_view" and context.get("source") == "search"
              and context.get("search_event_id") in searches):
            searches[context["search_event_id"]][1].add(payload["product_id"])
            led_to.add((context["search_event_id"], payload["product_id"], "click"))
        elif kind == "purchase" and event.get("session_id"):
            for search_id in reversed(session_searches.get(event["session_id"], ())):
                if payload.get("product_id") in searches[search_id][1]:
                    led_to.add((search_id, payload["product_id"], "purchase"))
                    break

    vectors: dict[str, Counter] = defaultdict(Counter)
    in_text: Counter = Counter()
    led: dict[str, set[str]] = defaultdict(set)  # term -> searches that led somewhere
    products_of: dict[str, set[str]] = defaultdict(set)  # search -> products it led to
    for search_id, product, _ in sorted(led_to):
        products_of[search_id].add(product)
        for term in searches[search_id][0]:
            vectors[term][product] += 1
            in_text[term] += term in text_terms.get(product, ())
            led[term].add(search_id)
    in_queries: Counter = Counter()
    together: Counter = Counter()
    for query_terms, _ in searches.values():
        in_queries.update(query_terms)
        together.update((a, b) for a in query_terms for b in query_terms if a < b)

    support = {t: sum(v.values()) for t, v in vectors.items()}
    norms = {t: math.sqrt(sum(n * n for n in v.values())) for t, v in vectors.items()}
    frequent = [t for t in sorted(vectors) if len(led[t]) >= min_count]
    gaps = [t for t in frequent if in_text[t] <= max_text_share * support[t]]
    by_product: dict[str, list[str]] = defaultdict(list)  # product -> catalog-side terms led to it
    for term in frequent:
        if in_text[term] > max_text_share * support[term]:
            for product in vectors[term]:
                by_product[product].append(term)

    learned = Synonyms()
    for gap in gaps:
        dots: Counter = Counter()
        for product, n in vectors[gap].items():
            for term in by_product.get(product, ()):
                dots[term] += n * vectors[term][product]
        shared: Counter = Counter()  # the gap's searches that led to a product of the term
        for search_id in led[gap]:
            shared.update({term for product in products_of[search_id] for term in by_product.get(product, ())})
        scored = []
        for term, dot in dots.items():
            cosine = dot / (norms[gap] * norms[term])
            pair = (min(gap, term), max(gap, term))
            if (cosine >= min_similarity and shared[term] >= min_count
                    and together[pair] <= max_together * min(in_queries[gap], in_queries[term])
                    and distance(gap, term, 2) > 2):
                scored.append((-cosine, term))
        for negative, term in sorted(scored)[:top]:
            learned.add(gap, term, round(weight * -negative, 3))
            learned.add(term, gap, round(weight * -negative, 3))
    return learned
