"""The serving blend (native, over the request's candidates) scores exactly what training's
Signals.parts scores over the whole catalogue, so the weights learned offline mean the same
online."""
import numpy as np
import pytest

from hanzo import _native
from hanzo.server.surfaces.recommend_signals import SIGNALS, Signals


def random_signals(rng, items: int = 400, neighbours: int = 12, window: int = 3) -> Signals:
    knn_index = rng.integers(0, items, size=(items, neighbours))
    knn_index[rng.random((items, neighbours)) < 0.2] = -1  # padding, as short neighbour lists have
    knn_weight = rng.random((items, neighbours))
    sequences = [list(rng.integers(0, items, size=rng.integers(2, 12))) for _ in range(300)]
    return Signals.from_sequences(sequences, items, knn_index, knn_weight, window)


def plan_for(signals: Signals, embeddings: np.ndarray) -> "_native.BlendPlan":
    return _native.BlendPlan(embeddings, signals.knn_index.astype(np.int64), signals.knn_weight.astype(np.float64),
                             signals.popularity.astype(np.float64), signals.next_pointers, signals.next_items,
                             signals.next_counts.astype(np.float64), signals.window)


@pytest.mark.parametrize("seed", range(6))
def test_native_blend_equals_training_signals(seed):
    rng = np.random.default_rng(seed)
    signals = random_signals(rng)
    items = len(signals.popularity)
    embeddings = rng.standard_normal((items, 16)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    user = rng.standard_normal(16).astype(np.float32)
    history = [int(x) for x in rng.integers(0, items, size=rng.integers(0, 15))]
    history += history[:3]  # repeats
    anchors = [int(x) for x in rng.integers(0, items, size=rng.integers(0, 3))]
    ann = rng.choice(items, size=40, replace=False)
    ann[-3:] = -1
    popular = np.argsort(-signals.popularity)[:20]
    blocked = (rng.random(items) < 0.1).astype(np.uint8)
    weights = rng.random(len(SIGNALS))

    candidates, score, source, parts = plan_for(signals, embeddings).score(ann, history, anchors, popular, blocked,
                                                                            user, weights)

    pool = [ann[ann >= 0], np.asarray(history, np.int64), popular, signals.neighbours(history, anchors)]
    if history or anchors:
        pool.append(signals.followers((history + anchors)[-1])[0])
    expected = np.unique(np.concatenate(pool).astype(np.int64))
    expected = expected[blocked[expected] == 0]
    np.testing.assert_array_equal(candidates, expected)
    reference = signals.parts(embeddings, user, history, anchors, expected)
    reference = np.stack([reference[name] for name in SIGNALS], axis=1).astype(np.float64)
    np.testing.assert_allclose(parts, reference, rtol=1e-5, atol=1e-6)
    weighted = reference * weights
    np.testing.assert_allclose(score, weighted.sum(axis=1), rtol=1e-5, atol=1e-6)
    # The source is the largest weighted part; where two are within float noise either may win.
    chosen = weighted[np.arange(len(source)), source]
    np.testing.assert_allclose(chosen, weighted.max(axis=1), rtol=1e-5, atol=1e-6)


def test_blend_plan_rejects_bad_input():
    rng = np.random.default_rng(0)
    signals = random_signals(rng, items=50)
    embeddings = np.ones((50, 4), np.float32)
    plan = plan_for(signals, embeddings)
    ok = dict(ann=np.arange(5), history=[1, 2], anchors=[], popular=np.arange(3), blocked=np.zeros(50, np.uint8),
              user=np.ones(4, np.float32), weights=np.ones(5))
    plan.score(**ok)
    for field, bad, words in [("history", [50], "out of range"), ("anchors", [-1], "out of range"),
                              ("blocked", np.zeros(49, np.uint8), "blocked"), ("user", np.ones(3, np.float32), "user"),
                              ("weights", np.ones(4), "weights"), ("blocked", np.zeros(50, np.int32), "blocked")]:
        with pytest.raises(ValueError, match=words):
            plan.score(**{**ok, field: bad})
    with pytest.raises(ValueError, match="knn_index"):
        _native.BlendPlan(embeddings, signals.knn_index[:10].astype(np.int64), signals.knn_weight[:10],
                          signals.popularity, signals.next_pointers, signals.next_items, signals.next_counts, 3)


def test_tables_naming_unknown_items_are_refused_and_a_zero_window_agrees():
    rng = np.random.default_rng(1)
    signals = random_signals(rng, items=60, window=0)
    embeddings = np.ones((60, 4), np.float32)
    plan = plan_for(signals, embeddings)
    candidates, _, _, parts = plan.score(np.arange(5), [3, 4, 5], [], np.arange(3), np.zeros(60, np.uint8),
                                         np.ones(4, np.float32), np.ones(5))
    reference = signals.parts(embeddings, np.ones(4, np.float32), [3, 4, 5], [], candidates)
    np.testing.assert_allclose(parts[:, 2], reference["co_visitation"])  # no co-visitation at window 0
    bad = signals.knn_index.astype(np.int64).copy()
    bad[0, 0] = 60
    with pytest.raises(ValueError, match="knn_index"):
        _native.BlendPlan(embeddings, bad, signals.knn_weight, signals.popularity, signals.next_pointers,
                          signals.next_items, signals.next_counts, 0)
    bad_next = signals.next_items.copy()
    bad_next[0] = -3
    with pytest.raises(ValueError, match="next_items"):
        _native.BlendPlan(embeddings, signals.knn_index.astype(np.int64), signals.knn_weight, signals.popularity,
                          signals.next_pointers, bad_next, signals.next_counts, 0)
