"""Query understanding: spelling correction against the catalog vocabulary (hand-made cases
and corrupted words of the Home Depot catalog) and synonyms, configured and learned from a
simulated search log."""
from __future__ import annotations

import json
import random
from collections import Counter

import pytest
from helpers import SHARED_DATA, shared_data

from hanzo.server.search.spelling import SpellingCorrector, distance
from hanzo.server.search.synonyms import Synonyms
from hanzo.training.search.synonym_learning import learn_synonyms
from hanzo.server.search.text import product_text, terms, words

HOMEDEPOT = SHARED_DATA / "homedepot" / "catalog.jsonl"

VOCABULARY = {"angle bracket": 20, "large tile": 30, "garage door opener": 10, "dishwasher": 10, "dish rack": 5,
              "washer dryer": 5, "door knob": 5, "kitchen faucet": 10, "refrigerator": 8, "bolt": 10, "boat": 5,
              "cord": 4, "card": 4}


@pytest.fixture(scope="module")
def corrector() -> SpellingCorrector:
    return SpellingCorrector.from_texts(text for text, n in VOCABULARY.items() for _ in range(n))


@pytest.mark.parametrize("typed, expected", [
    ("bracekt", "bracket"),  # transposition
    ("brackt", "bracket"),  # a letter left out
    ("braccket", "bracket"),  # a letter too many
    ("brecket", "bracket"),  # a wrong letter
    ("refigerater", "refrigerator"),  # two edits in a long word
    ("doorknob", "door knob"),  # split
    ("dish washer", "dishwasher"),  # join
    ("bost", "bolt"),  # bolt and boat one edit away: the more frequent
    ("curd", "card"),  # card and cord as frequent: alphabetical
    ("garge", "large"),  # garage and large one edit away: the more frequent alone...
    ("garge door", "garage door"),  # ...but the catalog writes "garage door"
])
def test_corrections(corrector: SpellingCorrector, typed: str, expected: str) -> None:
    corrected, changes = corrector.correct(typed)
    assert corrected == expected
    assert changes and " ".join(c for _, c in changes) in expected


def test_what_is_kept(corrector: SpellingCorrector) -> None:
    # Known words (as typed, or by stem), numbers, sizes and short words stay as typed.
    assert corrector.correct("  Angle   BRACKETS ") == ("angle brackets", [])
    assert corrector.correct("2x4 brackt 18v 1/2 brk") == ("2x4 bracket 18v 1/2 brk", [("brackt", "bracket")])
    assert corrector.correct("fuacte") == ("fuacte", [])  # two edits in a 6-letter word: too far
    assert corrector.correct("zzzzzz") == ("zzzzzz", [])  # nothing near
    assert corrector.correct("") == ("", [])


def test_deterministic() -> None:
    texts = [text for text, n in VOCABULARY.items() for _ in range(n)]
    queries = ["bost brackt", "curd", "garge door", "doorknob", "dish washer", "refigerater"]
    first = SpellingCorrector.from_texts(texts)
    second = SpellingCorrector.from_texts(reversed(texts))
    assert [first.correct(q) for q in queries] == [second.correct(q) for q in queries] \
        == [first.correct(q) for q in queries]


def test_follows_catalog_updates() -> None:
    corrector = SpellingCorrector.from_texts(["zircon lamp"] * 3)
    assert corrector.correct("tiffanie lamp") == ("tiffanie lamp", [])
    corrector.add_texts(["Tiffany Lamp"])  # known from its first product on...
    assert corrector.correct("tiffany lamp") == ("tiffany lamp", [])
    assert corrector.correct("tiffanie lamp") == ("tiffanie lamp", [])
    corrector.add_texts(["Tiffany Lamp"] * 2)  # ...offered as a correction from min_count (3)
    assert corrector.correct("tiffanie lamp") == ("tiffany lamp", [("tiffanie", "tiffany")])


def test_distance() -> None:
    assert distance("bracket", "bracket", 2) == 0
    assert distance("bracekt", "bracket", 2) == 1
    assert distance("refigerater", "refrigerator", 2) == 2
    assert distance("abc", "xyzuvw", 2) == 3  # capped at bound + 1


@shared_data("homedepot", "catalog.jsonl")
def test_homedepot_typos_come_back() -> None:
    """One random edit to common title words of the real catalog, corrected word by word
    without context: 370 of the 397 typos that are not themselves known words come back
    (93%; the misses are mostly other catalog words as near and more frequent); held at 85%."""
    with open(HOMEDEPOT) as handle:
        products = [json.loads(line) for line in handle]
    corrector = SpellingCorrector.from_texts(f"{p.get('title') or ''} {p.get('description') or ''}" for p in products)
    title_counts = Counter(w for p in products for w in words(p.get("title") or ""))
    pool = sorted(w for w, n in title_counts.items() if n >= 20 and w.isalpha() and len(w) >= 5)
    rng = random.Random(0)

    def corrupt(word: str) -> str:
        i, kind, letter = rng.randrange(1, len(word) - 1), rng.randrange(4), rng.choice("abcdefghijklmnopqrstuvwxyz")
        return (word[:i] + word[i + 1:], word[:i] + word[i + 1] + word[i] + word[i + 2:],
                word[:i] + letter + word[i + 1:], word[:i] + letter + word[i:])[kind]

    back = typos = 0
    for word in rng.sample(pool, 400):
        assert corrector.correct(word) == (word, [])
        typo = corrupt(word)
        if not corrector.known(typo):
            typos += 1
            back += corrector.correct(typo)[0] == word
    assert typos > 350
    assert back / typos >= 0.85, (back, typos)


# ---------------------------------------------------------------------------- synonyms


def test_configured_synonyms_expand() -> None:
    synonyms = Synonyms.from_pairs([("sofa", "couch"), ("fry pan", "frying pan"), ("area rug", "carpet")])
    assert synonyms.expand(terms("sofas")) == [("sofa", 1.0), ("couch", 0.5)]
    assert synonyms.expand(terms("Couch")) == [("couch", 1.0), ("sofa", 0.5)]
    assert synonyms.expand(terms("frying pans")) == [("frying", 1.0), ("pan", 1.0), ("fry", 0.5)]
    assert synonyms.expand(terms("grey carpet")) == [("grey", 1.0), ("carpet", 1.0), ("area", 0.5), ("rug", 0.5)]
    assert synonyms.expand(terms("area rug")) == [("area", 1.0), ("rug", 1.0), ("carpet", 0.5)]
    assert synonyms.expand(terms("rug")) == [("rug", 1.0)]  # half a phrase is not the phrase
    assert synonyms.expand(["sofa", "couch", "sofa"]) == [("sofa", 1.0), ("couch", 1.0)]  # no duplicates
    assert synonyms.expand([]) == []


def test_merge_keeps_the_larger_weight() -> None:
    configured = Synonyms.from_pairs([("sofa", "couch")])
    learned = Synonyms({"couch": [("sofa", 0.4), ("settee", 0.3)]})
    merged = configured.merge(learned)
    assert merged.expand(["couch"]) == [("couch", 1.0), ("sofa", 0.5), ("settee", 0.3)]
    assert merged.pairs() == [("couch", "settee", 0.3), ("couch", "sofa", 0.5)]


def _event(n: int, kind: str, session: str, payload: dict, context: dict | None = None) -> dict:
    return {"event_id": f"e{n:04d}", "event_type": kind, "timestamp": n, "user_id": "u", "session_id": session,
            "payload": payload, "context": context or {}}


def test_learned_from_clicks_and_purchases() -> None:
    """"couch" leads to the sofas "sofa" leads to (clicks, and a purchase after a search);
    "grey" leads there too but is in the sofas' titles; "fry" only ever comes with "pan"."""
    catalog = [{"product_id": "s1", "title": "Grey Sofa"}, {"product_id": "s2", "title": "Blue Sofa"},
               {"product_id": "p1", "title": "Grey Frying Pan"}]
    events, n = [], 0
    for k, (query, clicked) in enumerate([("sofa", "s1"), ("sofa", "s2"), ("sofa", "s1"), ("couch", "s1"),
                                          ("couch", None), ("grey", "s1"), ("grey", "p1"),
                                          ("frying pan", "p1"), ("frying pan", "p1"), ("fry pan", "p1"),
                                          ("fry pan", "p1"), ("grey sofa", "s1")]):
        n += 1
        events.append(_event(n, "search", f"s{k}", {"query": query, "product_ids": ["s1", "s2", "p1"]}))
        search_id = events[-1]["event_id"]
        if clicked:
            n += 1
            events.append(_event(n, "product_view", f"s{k}", {"product_id": clicked},
                                 {"source": "search", "search_event_id": search_id}))
        else:  # bought straight from the results page
            n += 1
            events.append(_event(n, "purchase", f"s{k}", {"product_id": "s2", "quantity": 1.0}))
    learned = learn_synonyms(reversed(events), catalog, min_count=2)
    assert [(a, b) for a, b, _ in learned.pairs()] == [("couch", "sofa"), ("fry", "frying")]
    assert learned.expand(["couch"])[1][0] == "sofa" and 0 < learned.expand(["couch"])[1][1] < 1


def test_learned_from_a_simulation_recovers_true_synonyms() -> None:
    """On small simulated marketplaces (2000 shoppers, 60 products, 20 days: a few seconds
    each) the learned pairs, as terms, are checked against the simulator's SYNONYMS: a learned
    pair is right when its terms come from the two sides of one true pair ("carpet" with
    "rug" or "area"). Seeds 1-3 learn 10 pairs, 8 right, covering 7 true pairs in all (over
    seeds 1-6: 19 of 22 right, 2.8 true pairs covered a seed, most of what the clicks
    support: a synonym typed alone finds nothing in the simulated shop and so leads to no
    click). Held at precision 0.6 and 6 true pairs covered over the three."""
    from hanzo.training.simulator.search import SYNONYMS
    from hanzo.training.simulator.world import Simulation, SimulationConfig

    truth = {}
    for one, other in SYNONYMS.items():
        left, right = terms(one), terms(other)
        truth[one] = {(min(a, b), max(a, b)) for a in left for b in right if a not in right and b not in left}
    learned_total = right_total = covered_total = 0
    for seed in (1, 2, 3):
        sim = Simulation(SimulationConfig(seed=seed, users=2000, products=60, days=20)).run()
        catalog = sim.initial_catalog() + [e["payload"] for e in sim.events if e["event_type"] == "catalog_update"]
        corrector = SpellingCorrector.from_texts(product_text(p) for p in catalog)
        learned = {(a, b) for a, b, _ in learn_synonyms(sim.events, catalog, corrector, min_count=2).pairs()}
        learned_total += len(learned)
        right_total += len(learned & set().union(*truth.values()))
        covered_total += sum(1 for pairs in truth.values() if pairs & learned)
    assert right_total / max(learned_total, 1) >= 0.6, (learned_total, right_total)
    assert covered_total >= 6, covered_total


def test_very_long_words_are_left_alone():
    corrector = SpellingCorrector.from_texts(["garage door opener"] * 5)
    word = "garagedooropener" * 30
    assert corrector.correct(f"{word} door") == (f"{word} door", [])
