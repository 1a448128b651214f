"""Reconciled forecasts add up at every level; already coherent forecasts stay as they are;
WLS moves the noisier series more; bottom-up sums the bottom."""
from __future__ import annotations

import numpy as np
import pytest

from hanzo.server.inventory.reconcile import Hierarchy, bottom_up, reconcile

PARENTS = {"total": None, "east": "total", "west": "total", "e1": "east", "e2": "east", "w1": "west"}


def _coherent(h: Hierarchy, forecast: np.ndarray) -> bool:
    rows = {name: forecast[i] for i, name in enumerate(h.names)}
    return (np.allclose(rows["total"], rows["east"] + rows["west"]) and np.allclose(rows["east"], rows["e1"] +
                                                                                     rows["e2"])
            and np.allclose(rows["west"], rows["w1"]))


def test_summing_matrix_and_coherence():
    h = Hierarchy.from_parents(PARENTS)
    assert h.bottom == ["e1", "e2", "w1"] and h.summing.shape == (6, 3)
    rng = np.random.default_rng(0)
    base = rng.uniform(10, 20, (6, 4))
    for forecast in (reconcile(h, base), reconcile(h, base, rng.uniform(0.5, 2, 6)), bottom_up(h, base)):
        assert _coherent(h, forecast)
    coherent = h.summing @ rng.uniform(1, 5, (3, 4))
    np.testing.assert_allclose(reconcile(h, coherent, rng.uniform(0.5, 2, 6)), coherent)


def test_wls_trusts_the_steadier_series():
    h = Hierarchy.from_parents({"total": None, "a": "total", "b": "total"})
    order = [h.names.index(n) for n in ("total", "a", "b")]
    base = np.zeros((3, 1))
    base[order[0]], base[order[1]], base[order[2]] = 10.0, 4.0, 4.0
    steady_total = np.ones(3)
    steady_total[order[0]] = 0.01
    noisy_total = np.ones(3)
    noisy_total[order[0]] = 100.0
    assert reconcile(h, base, steady_total)[order[0], 0] == pytest.approx(10.0, abs=0.05)
    assert reconcile(h, base, noisy_total)[order[0], 0] == pytest.approx(8.0, abs=0.05)


def test_bad_parents_are_refused():
    with pytest.raises(ValueError, match="parent 'nowhere'"):
        Hierarchy.from_parents({"a": "nowhere"})
