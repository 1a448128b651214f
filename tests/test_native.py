"""hanzo._native against NumPy references."""
from importlib.metadata import version

import numpy as np
import pytest

from hanzo import _native


def reference_topk(scores: np.ndarray, k: int):
    keyed = np.where(np.isnan(scores), -np.inf, scores)
    order = np.argsort(-keyed, axis=-1, kind="stable")[..., :k]
    return order, np.take_along_axis(scores, order, -1)


def test_version_matches_the_package():
    assert _native.__version__ == version("hanzo")


@pytest.mark.parametrize("shape, k", [((1000,), 10), ((7, 300), 5), ((3, 4), 4), ((2, 5), 0)])
def test_topk_matches_numpy(shape, k):
    rng = np.random.default_rng(0)
    scores = rng.standard_normal(shape).astype(np.float32)
    index, value = _native.topk(scores, k)
    ref_index, ref_value = reference_topk(scores, k)
    np.testing.assert_array_equal(index, ref_index)
    np.testing.assert_array_equal(value, ref_value)


def test_topk_ties_nan_and_k_beyond_columns():
    scores = np.array([[1.0, np.nan, 3.0, 3.0, 0.0]], dtype=np.float32)
    index, value = _native.topk(scores, 10)
    assert index.tolist() == [[2, 3, 0, 4, 1]]
    assert value[0, :4].tolist() == [3.0, 3.0, 1.0, 0.0]


def test_topk_rejects_bad_shapes():
    with pytest.raises(ValueError, match="1-D or 2-D"):
        _native.topk(np.zeros((2, 2, 2), np.float32), 1)
