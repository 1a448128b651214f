"""The model-loads check's own parts: its tiny model is valid, and a false verdict fails the command."""
import json

import numpy as np
import onnxruntime as ort
from hanzo.loadtest import model_loads


def test_tiny_model_runs_and_garbage_does_not(tmp_path):
    session = ort.InferenceSession(model_loads.tiny_model(seed=1).SerializeToString())
    (y,) = session.run(None, {"x": np.ones((2, model_loads.WIDTH), np.float32)})
    assert y.shape == (2, model_loads.WIDTH)
    model_loads.corrupt(tmp_path, "m", 2)
    assert (tmp_path / "m" / "2" / "model.onnx").read_bytes() == model_loads.GARBAGE


def test_a_false_verdict_exits_1(tmp_path, monkeypatch):
    out = tmp_path / "report.json"
    monkeypatch.setattr(model_loads, "run", lambda work, window: {"steps": [], "verdict": {"a": True, "b": False}})
    assert model_loads.main(["--out", str(out)]) == 1
    assert json.loads(out.read_text())["verdict"] == {"a": True, "b": False}
    monkeypatch.setattr(model_loads, "run", lambda work, window: {"steps": [], "verdict": {"a": True}})
    assert model_loads.main(["--out", str(out)]) == 0
