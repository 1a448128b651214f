"""BM25 over the catalog: title, category path, description and attributes, the title counted
twice (a title word says more about a product than a description word). Postings are CSR
arrays scored by a Numba kernel; the index follows catalog updates through a small second
segment rebuilt on each change and merged into the main one when it grows, so an update costs
the size of the changes, not of the catalogue."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable

import numba
import numpy as np

from .text import terms

TITLE_WEIGHT = 2.0
K1 = 1.2
B = 0.75


def product_terms(product: dict) -> Counter:
    """Field-weighted term frequencies of one catalog record."""
    counts: Counter = Counter()
    for term in terms(product.get("title") or ""):
        counts[term] += TITLE_WEIGHT
    category = product.get("category") or []
    for term in terms(" ".join(category) if isinstance(category, list) else str(category)):
        counts[term] += 1.0
    for term in terms(product.get("description") or ""):
        counts[term] += 1.0
    attributes = product.get("attributes") or {}
    if isinstance(attributes, dict):
        for key, value in attributes.items():
            if isinstance(value, (str, int, float)):
                for term in terms(f"{key} {value}"):
                    counts[term] += 1.0
    return counts


@dataclass
class Segment:
    """Postings of some documents (slots into the index's product list)."""
    pointers: np.ndarray  # int64 [terms + 1]
    docs: np.ndarray  # int32 [postings]
    tfs: np.ndarray  # float32 [postings]

    @classmethod
    def build(cls, slots: list[int], counts: list[Counter], vocabulary: dict[str, int]) -> "Segment":
        by_term: dict[int, list[tuple[int, float]]] = {}
        for slot, doc in zip(slots, counts):
            for term, tf in doc.items():
                by_term.setdefault(vocabulary[term], []).append((slot, tf))
        pointers = np.zeros(len(vocabulary) + 1, np.int64)
        for term_id, postings in by_term.items():
            pointers[term_id + 1] = len(postings)
        np.cumsum(pointers, out=pointers)
        docs = np.empty(pointers[-1], np.int32)
        tfs = np.empty(pointers[-1], np.float32)
        for term_id, postings in by_term.items():
            start = pointers[term_id]
            postings.sort()
            docs[start:start + len(postings)] = [p[0] for p in postings]
            tfs[start:start + len(postings)] = [p[1] for p in postings]
        return cls(pointers, docs, tfs)

    def document_frequency(self, terms_count: int) -> np.ndarray:
        df = np.diff(self.pointers)
        return np.pad(df, (0, terms_count - len(df)))


@numba.njit(cache=True, nogil=True)
def _accumulate(term_ids, weights, pointers, docs, tfs, doc_len, avg_len, idf, alive, scores, touched, n_touched):
    """Adds each query term's BM25 contribution to the documents holding it; returns how many
    documents have been touched so far (listed in `touched`)."""
    for q in range(len(term_ids)):
        t = term_ids[q]
        if t + 1 >= len(pointers):
            continue  # a term this segment has not seen
        w = weights[q] * idf[t]
        for j in range(pointers[t], pointers[t + 1]):
            d = docs[j]
            if not alive[d]:
                continue
            tf = tfs[j]
            norm = tf + K1 * (1.0 - B + B * doc_len[d] / avg_len)
            if scores[d] == 0.0:
                touched[n_touched] = d
                n_touched += 1
            scores[d] += w * tf * (K1 + 1.0) / norm
    return n_touched


class LexicalIndex:
    def __init__(self, merge_share: float = 0.05) -> None:
        self.merge_share = merge_share
        self.vocabulary: dict[str, int] = {}
        self.product_ids: list[str] = []
        self.slot_of: dict[str, int] = {}
        self._counts: list[Counter] = []  # per slot, kept for merges
        self.doc_len = np.zeros(0, np.float32)
        self.alive = np.zeros(0, np.uint8)
        self.main = Segment(np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32))
        self.delta = self.main
        self._delta_slots: list[int] = []
        self.layout = 0  # bumped when a merge renumbers the slots
        # Live documents' statistics, kept as products come and go so an update costs the
        # size of the change, not of the catalogue.
        self._df = np.zeros(0, np.float64)
        self._live = 0
        self._total_len = 0.0
        self._refresh_statistics()

    @classmethod
    def build(cls, products: Iterable[dict]) -> "LexicalIndex":
        index = cls()
        index.upsert(products, merge=True)
        return index

    def __len__(self) -> int:
        return self._live

    def _kill(self, slot: int) -> None:
        if self.alive[slot]:
            self.alive[slot] = 0
            self._live -= 1
            self._total_len -= float(self.doc_len[slot])
            for term in self._counts[slot]:
                self._df[self.vocabulary[term]] -= 1.0
        self._counts[slot] = Counter()

    def upsert(self, products: Iterable[dict], merge: bool = False) -> None:
        """Add or replace products: a replaced product's old slot goes dead and it takes a new
        one (a product given twice counts once, its last record)."""
        latest = {str(p["product_id"]): p for p in products}
        if not latest:
            return
        first = len(self.product_ids)
        for product_id, product in latest.items():
            old = self.slot_of.get(product_id)
            if old is not None:
                self._kill(old)
            counts = product_terms(product)
            for term in counts:
                if term not in self.vocabulary:
                    self.vocabulary[term] = len(self.vocabulary)
            self.slot_of[product_id] = len(self.product_ids)
            self.product_ids.append(product_id)
            self._counts.append(counts)
        new = range(first, len(self.product_ids))
        self.doc_len = np.concatenate([self.doc_len, np.asarray([sum(self._counts[s].values()) for s in new],
                                                                np.float32)])
        self.alive = np.concatenate([self.alive, np.ones(len(new), np.uint8)])
        if len(self._df) < len(self.vocabulary):
            self._df = np.pad(self._df, (0, len(self.vocabulary) - len(self._df)))
        for slot in new:
            self._live += 1
            self._total_len += float(self.doc_len[slot])
            for term in self._counts[slot]:
                self._df[self.vocabulary[term]] += 1.0
        self._delta_slots.extend(new)
        if merge or len(self._delta_slots) > self.merge_share * max(len(self.product_ids), 1):
            self._merge()
        else:
            self.delta = Segment.build(self._delta_slots, [self._counts[s] for s in self._delta_slots],
                                       self.vocabulary)
        self._refresh_statistics()

    def remove(self, product_ids: Iterable[str]) -> None:
        for product_id in product_ids:
            slot = self.slot_of.pop(product_id, None)
            if slot is not None:
                self._kill(slot)
        self._refresh_statistics()

    def _merge(self) -> None:
        """One segment over every live product, the slots compacted."""
        live = [s for s in range(len(self.product_ids)) if self.alive[s]]
        self.product_ids = [self.product_ids[s] for s in live]
        self._counts = [self._counts[s] for s in live]
        self.slot_of = {p: i for i, p in enumerate(self.product_ids)}
        self.doc_len = self.doc_len[live] if live else np.zeros(0, np.float32)
        self.alive = np.ones(len(live), np.uint8)
        self.main = Segment.build(list(range(len(live))), self._counts, self.vocabulary)
        self.layout += 1
        self.delta = Segment(np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32))
        self._delta_slots = []

    def _refresh_statistics(self) -> None:
        # Document frequencies count only live documents, so a product replaced many times
        # does not inflate its terms' frequency.
        n = max(self._live, 1)
        df = self._df[:len(self.vocabulary)]
        self.idf = np.log(1.0 + (n - df + 0.5) / (df + 0.5)).astype(np.float32)
        self.avg_len = self._total_len / self._live if self._live else 1.0

    def term_ids(self, weighted_terms: Iterable[tuple[str, float]]) -> tuple[np.ndarray, np.ndarray]:
        """Known terms of a query as ids with their weights (repeats add up)."""
        merged: dict[int, float] = {}
        for term, weight in weighted_terms:
            term_id = self.vocabulary.get(term)
            if term_id is not None and weight > 0:
                merged[term_id] = merged.get(term_id, 0.0) + weight
        return np.fromiter(merged.keys(), np.int64, len(merged)), np.fromiter(merged.values(), np.float32,
                                                                                 len(merged))

    def knows(self, term: str) -> bool:
        return term in self.vocabulary

    def _score_all(self, term_ids: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores per slot, the slots that scored), both segments accumulated."""
        scores = np.zeros(len(self.product_ids), np.float32)
        touched = np.empty(len(self.product_ids), np.int64)
        n = 0
        for segment in (self.main, self.delta):
            if len(segment.docs):
                n = _accumulate(term_ids, weights, segment.pointers, segment.docs, segment.tfs, self.doc_len,
                                np.float32(self.avg_len), self.idf, self.alive, scores, touched, n)
        return scores, touched[:n]

    def search(self, weighted_terms: Iterable[tuple[str, float]], k: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        """The k best products for the query terms, as (slots int64, scores float32), best
        first; empty when no term is known."""
        term_ids, weights = self.term_ids(weighted_terms)
        if len(term_ids) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        scores, hits = self._score_all(term_ids, weights)
        values = scores[hits]
        if len(hits) > k:
            keep = np.argpartition(-values, k - 1)[:k]
            hits, values = hits[keep], values[keep]
        order = np.lexsort((hits, -values))  # score, then slot: deterministic on ties
        return hits[order], values[order]

    def scores_for(self, weighted_terms: Iterable[tuple[str, float]], slots: np.ndarray) -> np.ndarray:
        """BM25 scores of given products (0 where no term matches): for candidates brought by
        the caller."""
        term_ids, weights = self.term_ids(weighted_terms)
        if len(term_ids) == 0:
            return np.zeros(len(slots), np.float32)
        return self._score_all(term_ids, weights)[0][slots]

    def rank_given(self, weighted_terms: Iterable[tuple[str, float]], product_ids: Iterable[str]
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Candidates brought by the caller, in BM25 order (score, then slot): (slots, scores);
        duplicates count once and products the index does not hold are left out."""
        slots = np.fromiter((self.slot_of[p] for p in dict.fromkeys(product_ids) if p in self.slot_of), np.int64)
        scores = self.scores_for(weighted_terms, slots)
        order = np.lexsort((slots, -scores))
        return slots[order], scores[order]
