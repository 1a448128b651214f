"""The fraud model's tree side: our TreeEnsemble (Numba margin and TreeSHAP) and the ONNX export
must reproduce xgboost's own predict, margins and pred_contribs on a model with missing values."""
from __future__ import annotations

import math

import numpy as np
import pytest

xgb = pytest.importorskip("xgboost")
pytest.importorskip("onnxmltools")
ort = pytest.importorskip("onnxruntime")

from hanzo.server.models.tree_ensemble import TreeEnsemble  # noqa: E402 (after the skip)
from hanzo.training.xgb_export import export_onnx, tree_ensemble  # noqa: E402

N_ROWS = 2_000
N_FEATURES = 12
UNUSED = 11  # a constant column: no split can separate its rows, so no tree uses it


def _data(seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N_ROWS, N_FEATURES)).astype(np.float32)
    # Interactions and a step, so trees split on the same feature twice along a path (the
    # unwind branch of TreeSHAP) as well as on different ones.
    logit = 1.5 * X[:, 0] - X[:, 1] + 0.8 * X[:, 2] * X[:, 3] + np.where(X[:, 4] > 0.5, 1.0, -0.5) - 2.0
    y = (rng.random(N_ROWS) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    missing = rng.random(X.shape) < 0.1
    missing[:, UNUSED] = False
    X[missing] = np.nan
    X[:, UNUSED] = 1.0
    return X, y


def _train(X: np.ndarray, y: np.ndarray, **params) -> xgb.Booster:
    params = {"objective": "binary:logistic", "max_depth": 5, "eta": 0.3, "seed": 0, "nthread": 2, **params}
    return xgb.train(params, xgb.DMatrix(X, label=y), num_boost_round=60)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return _data()


@pytest.fixture(scope="module", params=[None, 0.1], ids=["base_score_default", "base_score_0.1"])
def model(request, data) -> tuple[xgb.Booster, TreeEnsemble, float | None]:
    X, y = data
    extra = {} if request.param is None else {"base_score": request.param}
    booster = _train(X, y, **extra)
    return booster, tree_ensemble(booster), request.param


def test_data_has_missing_values(data):
    X, _ = data
    assert 0.05 < np.isnan(X).mean() < 0.15


def test_base_margin_is_logit_of_base_score(model, data):
    _, ensemble, base_score = model
    _, y = data
    # xgboost 3 stores base_score in probability space; by default it is fitted to the label mean.
    expected = base_score if base_score is not None else float(y.mean())
    assert ensemble.base_margin == pytest.approx(math.log(expected / (1 - expected)), abs=1e-3)


def test_contributions_match_pred_contribs(model, data):
    booster, ensemble, _ = model
    X, _ = data
    ours = ensemble.contributions(X)
    theirs = booster.predict(xgb.DMatrix(X), pred_contribs=True)
    assert ours.shape == (N_ROWS, N_FEATURES + 1)
    # xgboost computes in float32; margins here span a few units, so 1e-4 is ~float32 noise x trees.
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)
    assert ours[:, -1] == pytest.approx(ensemble.expected_margin)


def test_contributions_sum_to_margin(model, data):
    booster, ensemble, _ = model
    X, _ = data
    margin = ensemble.margin(X)
    np.testing.assert_allclose(ensemble.contributions(X).sum(axis=1), margin, rtol=0, atol=1e-9)
    np.testing.assert_allclose(margin, booster.predict(xgb.DMatrix(X), output_margin=True), rtol=0, atol=1e-4)


def test_unsplit_feature_has_zero_contribution(model, data):
    _, ensemble, _ = model
    X, _ = data
    assert UNUSED not in set(ensemble.feature.tolist())
    rows = X[:50].copy()
    rows[::3, UNUSED] = np.nan
    rows[1::3, UNUSED] = 1e6
    assert np.all(ensemble.contributions(rows)[:, UNUSED] == 0.0)


def test_onnx_probability_matches_predict(model, data, tmp_path):
    booster, _, _ = model
    X, _ = data
    path = tmp_path / "fraud_xgb.onnx"
    export_onnx(booster, N_FEATURES, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["features"]
    outputs = [(o.name, o.type, o.shape) for o in session.get_outputs()]
    assert outputs == [("probability", "tensor(float)", ["batch", 1])]
    (probability,) = session.run(None, {"features": X})
    assert probability.shape == (N_ROWS, 1)
    np.testing.assert_allclose(probability[:, 0], booster.predict(xgb.DMatrix(X)), rtol=0, atol=1e-5)
    # One all-missing row: every split takes its default branch in both.
    blank = np.full((1, N_FEATURES), np.nan, np.float32)
    (p_blank,) = session.run(None, {"features": blank})
    assert p_blank[0, 0] == pytest.approx(float(booster.predict(xgb.DMatrix(blank))[0]), abs=1e-5)


def test_save_load_round_trip(model, data, tmp_path):
    _, ensemble, _ = model
    X, _ = data
    path = tmp_path / "fraud_trees"  # no .npz suffix: the file must still be at exactly this path
    ensemble.save(path)
    loaded = TreeEnsemble.load(path)
    assert loaded.base_margin == ensemble.base_margin
    assert loaded.n_features == ensemble.n_features
    np.testing.assert_array_equal(loaded.margin(X), ensemble.margin(X))
    np.testing.assert_array_equal(loaded.contributions(X), ensemble.contributions(X))


def test_regression_objective_has_identity_link(data):
    X, y = data
    booster = _train(X, y, objective="reg:squarederror", max_depth=4)
    ensemble = tree_ensemble(booster)
    d = xgb.DMatrix(X)
    np.testing.assert_allclose(ensemble.margin(X), booster.predict(d, output_margin=True), rtol=0, atol=1e-4)
    np.testing.assert_allclose(ensemble.contributions(X), booster.predict(d, pred_contribs=True), rtol=0, atol=1e-4)


def test_rejects_wrong_feature_count(model):
    _, ensemble, _ = model
    with pytest.raises(ValueError, match="shape"):
        ensemble.contributions(np.zeros((2, N_FEATURES - 1), np.float32))
