"""The ANN index: recall against exact search, masks that never leak, growth."""
import numpy as np

from hanzo.server.retrieval.ann import ItemIndex


def unit(rng, n, d=32):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_recall_at_100_against_exact_search():
    rng = np.random.default_rng(0)
    items, queries = unit(rng, 20000), unit(rng, 50)
    index = ItemIndex.build(items)
    labels, scores = index.search(queries, 100)
    exact = np.argsort(-(queries @ items.T), axis=1)[:, :100]
    recall = np.mean([len(set(a) & set(b)) / 100 for a, b in zip(labels, exact)])
    assert recall >= 0.95, recall
    np.testing.assert_allclose(scores[:, 0], np.sum(queries * items[labels[:, 0]], axis=1), rtol=1e-4, atol=1e-5)


def test_blocked_items_never_come_back_and_k_is_filled():
    rng = np.random.default_rng(1)
    items = unit(rng, 3000)
    index = ItemIndex.build(items)
    query = items[:5]
    blocked = np.zeros(len(items), dtype=np.uint8)
    first, _ = index.search(query, 50)
    blocked[np.unique(first)] = 1  # block everything the unmasked search found
    labels, _ = index.search(query, 50, blocked)
    assert (labels >= 0).all() and not blocked[labels].any()
    # Almost everything blocked: the survivors, then -1.
    blocked[:] = 1
    blocked[[7, 9]] = 0
    labels, scores = index.search(query[:1], 5, blocked)
    assert sorted(labels[0, :2].tolist()) == [7, 9] and (labels[0, 2:] == -1).all()


def test_new_items_join_without_rebuilding(tmp_path):
    rng = np.random.default_rng(2)
    items = unit(rng, 500)
    index = ItemIndex.build(items)
    index.save(tmp_path / "index.bin")
    loaded = ItemIndex.load(tmp_path / "index.bin", dim=32, capacity=500)
    new = unit(rng, 3)
    loaded.add(np.arange(500, 503), new)
    assert len(loaded) == 503
    labels, _ = loaded.search(new, 1)
    assert labels[:, 0].tolist() == [500, 501, 502]
