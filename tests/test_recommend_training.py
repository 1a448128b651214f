"""The two-tower pipeline on a small simulated marketplace: features through the offline join,
training, export, and a blend tuned on validation."""
import numpy as np
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0)")

from hanzo.server.features.formats import read_records  # noqa: E402
from hanzo.training.recommend.data import next_basket_tasks  # noqa: E402
from hanzo.training.recommend.pipeline import (SIGNALS, Blend, evaluate_blend, train_and_score,  # noqa: E402
                                               tune_blend)
from hanzo.training.recommend.two_tower import TrainingConfig  # noqa: E402
from hanzo.training.simulator import SimulationConfig, simulate  # noqa: E402


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("rec")
    simulate(SimulationConfig(seed=4, users=400, products=120, days=20), out)
    records = sorted(read_records(out / "events.jsonl.gz"), key=lambda r: r["timestamp"])
    return out, records


def test_two_tower_learns_and_the_blend_is_tuned_on_validation(world, tmp_path):
    out, records = world
    validation, test = next_basket_tasks(out / "events.jsonl.gz")
    assert validation.examples and validation.cases
    trained = train_and_score(records, validation, TrainingConfig(epochs=4, batch=256), log=lambda m: None)
    alone = evaluate_blend(Blend(), trained.case_parts, validation.cases, 10, ("recall",))["recall"].mean()
    # Better than chance: 10 of ~120 products drawn at random would find about 8% of a basket.
    assert alone > 2 * 10 / len(validation.vocabulary)
    blend, best = tune_blend(trained.case_parts, validation.cases, 10, "recall")
    assert best >= alone and set(blend.weights) == set(SIGNALS)
    # The exported user tower computes the same embeddings as torch.
    path = tmp_path / "user.onnx"
    trained.model.export_user_tower(path)
    from hanzo.training.recommend.pipeline import user_inputs

    inputs, _ = user_inputs(records, validation, [(c.key, c.as_of) for c in validation.cases[:16]])
    onnx_out = ort.InferenceSession(str(path)).run(None, inputs.as_feeds())[0]
    np.testing.assert_allclose(onnx_out, trained.model.user_embeddings(inputs), rtol=1e-4, atol=1e-5)
