"""config.pbtxt model_warmup, honoured: each sample runs before the version serves (zero data,
seeded random data, or a file of the model's warmup/ folder), and a sample that does not fit
the model, names a path, or makes the model fail stops the load, naming the sample."""
from __future__ import annotations

import logging
import struct

import numpy as np
import pytest

from hanzo.server.models import ModelRepository
from hanzo.server.models.errors import FailedPrecondition
from hanzo.server.models.repository import READY
from hanzo.training.triton_example_models import build_triton_examples


def _with_warmup(root, model: str, text: str) -> None:
    config = root / model / "config.pbtxt"
    config.write_text(config.read_text() + "\n" + text + "\n")


def _sample(name: str, data: str, datatype: str = "TYPE_INT32", batch: int = 2, count: int = 1,
            inputs=("INPUT0", "INPUT1"), dims: str = "[16]") -> str:
    given = " ".join(f'inputs {{ key: "{i}" value: {{ data_type: {datatype} dims: {dims} {data} }} }}' for i in inputs)
    return f'model_warmup [{{ name: "{name}" batch_size: {batch} count: {count} {given} }}]'


async def test_samples_run_before_the_version_serves(tmp_path, caplog):
    root = tmp_path / "repo"
    build_triton_examples(root)
    (root / "simple" / "warmup").mkdir()
    (root / "simple" / "warmup" / "sixteen.bin").write_bytes(np.arange(16, dtype=np.int32).tobytes())
    _with_warmup(root, "simple", _sample("zeros", "zero_data: true").replace("}]", "}, { name: \"file\" "
                 "batch_size: 8 inputs { key: \"INPUT0\" value: { data_type: TYPE_INT32 dims: [16] input_data_file: "
                 "\"sixteen.bin\" } } inputs { key: \"INPUT1\" value: { data_type: TYPE_INT32 dims: [16] "
                 "random_data: true } } }]"))
    (root / "simple_string" / "warmup").mkdir()
    (root / "simple_string" / "warmup" / "digits.bin").write_bytes(
        b"".join(struct.pack("<I", 1) + str(i % 10).encode() for i in range(16)))
    _with_warmup(root, "simple_string", _sample("text", 'input_data_file: "digits.bin"', "TYPE_STRING", count=3))
    repo = ModelRepository(root)
    with caplog.at_level(logging.INFO):
        await repo.load_all()
    assert {(e.name, e.state) for e in repo.index()} >= {("simple", READY), ("simple_string", READY)}
    runs = {tuple(r.samples) for r in caplog.records if r.getMessage() == "model warm-up samples run"}
    assert runs == {("zeros", "file"), ("text",)}
    assert repo.get("simple").stats.inference_count == 0  # a warm-up is no request
    await repo.close()


@pytest.mark.parametrize("model, text, words", [
    ("simple", _sample("up", 'input_data_file: "../../etc/passwd"'), "must be a file name in the model's warmup/"),
    ("simple", _sample("up", 'input_data_file: "absent.bin"'), "absent.bin: No such file"),
    ("simple", _sample("up", "zero_data: true", dims="[8]"), "dims [8] do not fit the model's [16]"),
    ("simple", _sample("up", "zero_data: true", inputs=("INPUT0",)), "inputs ['INPUT1'] missing"),
    ("simple", _sample("up", "zero_data: true", datatype="TYPE_FP32"), "TYPE_FP32, but the model's is TYPE_INT32"),
    ("simple", _sample("up", "zero_data: true", batch=0), "batch_size must be at least 1"),
    ("simple_string", _sample("empty", "zero_data: true", "TYPE_STRING"), "model_warmup[0] (empty): the model "
                                                                           "failed on it"),
])
async def test_a_sample_that_cannot_run_stops_the_load_naming_it(tmp_path, model, text, words):
    root = tmp_path / "repo"
    build_triton_examples(root)
    _with_warmup(root, model, text)
    repo = ModelRepository(root)
    with pytest.raises(FailedPrecondition) as info:
        await repo.load(model)
    assert words in str(info.value), info.value
    await repo.close()
