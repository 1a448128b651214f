"""The search re-ranker's inputs, built one way for training and serving: hashed word ids of
the query and of each product (title then category words, in fixed slots), product features,
the lexical features of a BM25 candidate list, and the user's features."""
from __future__ import annotations

import zlib

import numpy as np

from ..features.definitions import CATEGORY_SLOTS
from .text import terms

VOCAB = 1 << 17  # hashed word buckets, shared by queries and products so equal words meet
QUERY_LEN = 8
TITLE_LEN = 16
CATEGORY_LEN = 4
PRODUCT_LEN = TITLE_LEN + CATEGORY_LEN
PRODUCT_FEATURES = 4 + CATEGORY_SLOTS
USER_FEATURES = CATEGORY_SLOTS + 1  # category affinity, and whether a user is known
LEXICAL_FEATURES = 3  # BM25 score over the query's best, log rank, whether BM25 matched at all


def word_id(term: str) -> int:
    """A stable bucket in 1..VOCAB-1 (0 pads)."""
    return 1 + zlib.crc32(term.encode()) % (VOCAB - 1)


def query_ids(query: str) -> np.ndarray:
    ids = [word_id(t) for t in terms(query)[:QUERY_LEN]]
    return np.asarray(ids or [0], np.int64)


def product_ids_row(product: dict) -> np.ndarray:
    """Title words then category words, in fixed slots, 0 padded."""
    row = np.zeros(PRODUCT_LEN, np.int64)
    title = [word_id(t) for t in terms(product.get("title") or "")[:TITLE_LEN]]
    row[:len(title)] = title
    category = product.get("category") or []
    words = [word_id(t) for t in terms(" ".join(category) if isinstance(category, list) else str(category))]
    words = words[-CATEGORY_LEN:]  # the leaf end of the path says most
    row[TITLE_LEN:TITLE_LEN + len(words)] = words
    return row


def product_features_row(product: dict, category_slot: int | None) -> np.ndarray:
    title = terms(product.get("title") or "")
    description = terms(product.get("description") or "")
    row = np.zeros(PRODUCT_FEATURES, np.float32)
    row[:4] = [np.log1p(len(title)), float(bool(description)), np.log1p(len(description)),
               float(bool(product.get("category")))]
    if category_slot is not None and 0 <= category_slot < CATEGORY_SLOTS:
        row[4 + category_slot] = 1.0
    return row




def lexical_features(scores: np.ndarray) -> np.ndarray:
    """[n, 3] from BM25 scores in candidate order (best first): score over the best, log rank,
    matched at all (a candidate brought by the caller may not match)."""
    n = len(scores)
    out = np.zeros((n, LEXICAL_FEATURES), np.float32)
    top = float(scores.max()) if n and scores.max() > 0 else 1.0
    out[:, 0] = scores / top
    out[:, 1] = np.log1p(np.arange(n, dtype=np.float32)) / np.log(1001.0)
    out[:, 2] = scores > 0
    return out


def user_features(affinity: np.ndarray | None) -> np.ndarray:
    """The user's category affinity (CATEGORY_SLOTS shares) and whether a user is known."""
    out = np.zeros(USER_FEATURES, np.float32)
    if affinity is not None:
        out[:CATEGORY_SLOTS] = np.nan_to_num(affinity[:CATEGORY_SLOTS])
        out[CATEGORY_SLOTS] = 1.0
    return out


# What drift is measured on (server/experiments/drift.py): per candidate shown, the query's
# length, the list's size, the candidate's lexical and product features, whether the user is
# known and their strongest category affinity (the one-hot and affinity slots summarised)
DRIFT_INPUTS = ("query_words", "candidates_log", "bm25_relative", "bm25_log_rank", "bm25_matched", "title_words_log",
                "has_description", "description_words_log", "has_category", "user_known", "user_top_affinity")


def drift_rows(query: np.ndarray, candidates: int, lexical: np.ndarray, product_features: np.ndarray,
               user: np.ndarray) -> np.ndarray:
    """[n, len(DRIFT_INPUTS)] for the n candidates shown, from the re-ranker's own inputs."""
    n = len(lexical)
    out = np.empty((n, len(DRIFT_INPUTS)), np.float64)
    out[:, 0] = np.count_nonzero(query)
    out[:, 1] = np.log1p(candidates)
    out[:, 2:5] = lexical
    out[:, 5:9] = product_features[:, :4]
    out[:, 9] = user[CATEGORY_SLOTS]
    out[:, 10] = user[:CATEGORY_SLOTS].max(initial=0.0)
    return out
