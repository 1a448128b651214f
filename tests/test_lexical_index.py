"""BM25: the kernel against the formula by hand, and an index kept up to date by upserts and
removals scoring exactly as one rebuilt from scratch."""
import math

import numpy as np

from hanzo.server.search.lexical import B, K1, TITLE_WEIGHT, LexicalIndex, product_terms
from hanzo.server.search.text import terms

PRODUCTS = [
    {"product_id": "a", "title": "Angle bracket", "description": "steel angle for joints"},
    {"product_id": "b", "title": "Shelf bracket white", "category": ["Storage", "Shelving"]},
    {"product_id": "c", "title": "Garage door opener", "description": "quiet belt drive"},
    {"product_id": "d", "title": "Door knob brass", "attributes": {"finish": "brass"}},
    {"product_id": "e", "title": "Steel door", "description": "exterior steel door with frame"},
]


def bm25_by_hand(products, query):
    docs = {p["product_id"]: product_terms(p) for p in products}
    n = len(docs)
    avg = sum(sum(d.values()) for d in docs.values()) / n
    out = {}
    for pid, doc in docs.items():
        length = sum(doc.values())
        score = 0.0
        for term in terms(query):
            df = sum(1 for d in docs.values() if term in d)
            if term not in doc:
                continue
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            tf = doc[term]
            score += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / avg))
        if score > 0:
            out[pid] = score
    return out


def ranked(index, query, k=10):
    slots, scores = index.search([(t, 1.0) for t in terms(query)], k)
    return {index.product_ids[s]: float(v) for s, v in zip(slots, scores)}


def test_scores_match_the_formula_and_fields_are_weighted():
    index = LexicalIndex.build(PRODUCTS)
    for query in ["steel door", "brackets", "brass knob", "angle steel joint"]:
        got, want = ranked(index, query), bm25_by_hand(PRODUCTS, query)
        assert got.keys() == want.keys(), query
        for pid in want:
            assert math.isclose(got[pid], want[pid], rel_tol=1e-5), (query, pid)
    assert product_terms(PRODUCTS[0])["angle"] == TITLE_WEIGHT + 1  # title twice, description once
    assert ranked(index, "xylophone") == {}


def test_best_first_ties_by_slot_and_k_limits():
    index = LexicalIndex.build([{"product_id": str(i), "title": "lamp"} for i in range(20)])
    slots, scores = index.search([("lamp", 1.0)], 5)
    assert list(slots) == [0, 1, 2, 3, 4] and np.all(scores == scores[0])


def test_updates_score_exactly_as_a_rebuild():
    rng = np.random.default_rng(0)
    words = "door steel brass knob shelf bracket angle lamp white black oak chair table".split()
    catalog = {f"p{i}": {"product_id": f"p{i}", "title": " ".join(rng.choice(words, 3))} for i in range(300)}
    index = LexicalIndex.build(catalog.values())
    for step in range(40):  # small changes stay in the second segment, some trigger merges
        changed = [{"product_id": f"p{int(i)}", "title": " ".join(rng.choice(words, 4))}
                   for i in rng.integers(0, 400, size=rng.integers(1, 12))]
        index.upsert(changed)
        catalog.update({p["product_id"]: p for p in changed})
        if step % 7 == 3:
            gone = [f"p{int(i)}" for i in rng.integers(0, 400, size=3)]
            index.remove(gone)
            for pid in gone:
                catalog.pop(pid, None)
        rebuilt = LexicalIndex.build(catalog.values())
        assert len(index) == len(rebuilt) == len(catalog)
        for query in ["door steel", "oak table lamp", "bracket"]:
            got, want = ranked(index, query, 1000), ranked(rebuilt, query, 1000)  # all matches: slots differ on ties
            assert got.keys() == want.keys()
            for pid in want:
                assert math.isclose(got[pid], want[pid], rel_tol=1e-5)


def test_scores_for_given_candidates():
    index = LexicalIndex.build(PRODUCTS)
    slots = np.asarray([index.slot_of[p] for p in ["e", "a", "b"]])
    scores = index.scores_for([("steel", 1.0)], slots)
    want = bm25_by_hand(PRODUCTS, "steel")
    assert math.isclose(scores[0], want["e"], rel_tol=1e-5) and math.isclose(scores[1], want["a"], rel_tol=1e-5)
    assert scores[2] == 0.0
