"""Sequence batching through a real server with tritonclient's own clients: NVIDIA's sequence
examples (sync, streaming, asyncio streaming, HTTP) as they call it and with the answers they
expect; implicit state carried from request to request per sequence, in order even when many
sequences are pipelined on one stream; the correlation id fed to the model; START, END and the
idle timeout; the bound on live sequences; and each misuse refused naming the parameter."""
from __future__ import annotations

import asyncio
import queue
import time
import uuid

import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
import tritonclient.http as httpclient
from onnx import TensorProto, helper
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import InferenceServerException

from helpers import ServerProcess, load_entry

from hanzo.loadtest.targets import free_port
from hanzo.server.models import ModelRepository
from hanzo.training.repository_writer import write_version
from hanzo.training.triton_example_models import build_triton_examples

VALUES = [11, 7, 5, 3, 2, 0, 1]  # the examples' values
Kind = mc.ModelSequenceBatching.Control.Kind


def accumulator() -> onnx.ModelProto:
    """OUTPUT = ACC + INPUT, with ACC the sequence's implicit state (ACC_OUT fed back); CORR and
    ENDED echo the CORRID and END controls."""
    def tensor(name: str, element: int = TensorProto.INT32) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, element, ["batch", 1])

    graph = helper.make_graph(
        [helper.make_node("Add", ["ACC", "INPUT"], ["OUTPUT"]), helper.make_node("Identity", ["OUTPUT"], ["ACC_OUT"]),
         helper.make_node("Identity", ["CORRID"], ["CORR"]), helper.make_node("Identity", ["END"], ["ENDED"])],
        "accumulate", [tensor("INPUT"), tensor("ACC"), tensor("START"), tensor("END"), tensor("READY"),
                       tensor("CORRID", TensorProto.UINT64)],
        [tensor("OUTPUT"), tensor("ACC_OUT"), tensor("CORR", TensorProto.UINT64), tensor("ENDED")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def accumulator_config(idle_us: int = 0, max_sequences: int = 0) -> mc.ModelConfig:
    config = mc.ModelConfig(name="accumulate", platform="onnxruntime_onnx", max_batch_size=8)
    sb = config.sequence_batching
    sb.max_sequence_idle_microseconds = idle_us
    sb.oldest.max_candidate_sequences = 2  # never holds a sequence back: every live one is a candidate
    sb.oldest.max_queue_delay_microseconds = 1000
    if max_sequences:
        config.parameters["max_sequences"].string_value = str(max_sequences)
    for name, kind in (("START", "CONTROL_SEQUENCE_START"), ("END", "CONTROL_SEQUENCE_END"),
                       ("READY", "CONTROL_SEQUENCE_READY")):
        sb.control_input.add(name=name).control.add(kind=Kind.Value(kind), int32_false_true=[0, 1])
    sb.control_input.add(name="CORRID").control.add(kind=Kind.Value("CONTROL_SEQUENCE_CORRID"),
                                                    data_type=mc.TYPE_UINT64)
    sb.state.add(input_name="ACC", output_name="ACC_OUT", data_type=mc.TYPE_INT32, dims=[1])
    return config


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("sequences") / "repo"
    build_triton_examples(root)
    write_version(root, accumulator_config(), 1, accumulator())
    config = accumulator_config(idle_us=300_000, max_sequences=3)
    config.name = "accumulate_bounded"
    write_version(root, config, 1, accumulator())
    process = ServerProcess(root, "--no-demo-models", "--http-port", str(free_port())).wait_ready()
    yield process
    assert process.terminate() == 0


def value_input(module, value: int):
    tensor = module.InferInput("INPUT", [1, 1], "INT32")
    tensor.set_data_from_numpy(np.full((1, 1), value, np.int32))
    return [tensor]


def expected(first_output: int, sign: int) -> list[int]:
    return [first_output] + [sign * v for v in VALUES]


def test_the_sync_sequence_example_answers_as_against_triton(server):
    """simple_grpc_sequence_sync_infer_client: two integer sequences and a string (UUID) one."""
    client = grpcclient.InferenceServerClient(server.url)
    string_id = str(uuid.uuid4())
    got: dict = {1000: [], 1001: [], string_id: []}
    for sequence_id, first, sign in ((1000, 0, 1), (1001, 100, -1), (string_id, 20, -1)):
        values = [first] + [sign * v for v in VALUES]
        for i, value in enumerate(values):
            result = client.infer("simple_sequence", value_input(grpcclient, value), sequence_id=sequence_id,
                                  sequence_start=i == 0, sequence_end=i == len(values) - 1)
            got[sequence_id].append(int(result.as_numpy("OUTPUT")[0, 0]))
    assert got[1000] == expected(1, 1) and got[1001] == expected(101, -1) and got[string_id] == expected(21, -1)


def test_the_http_sequence_example_answers_as_against_triton(server):
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    for sequence_id, first, sign in ((1000, 0, 1), (1001, 100, -1)):
        values = [first] + [sign * v for v in VALUES]
        outputs = [int(client.infer("simple_sequence", value_input(httpclient, value), sequence_id=sequence_id,
                                    sequence_start=i == 0, sequence_end=i == len(values) - 1)
                       .as_numpy("OUTPUT")[0, 0]) for i, value in enumerate(values)]
        assert outputs == expected(first + 1, sign)


def test_the_stream_sequence_example_answers_in_order_per_sequence(server):
    """simple_grpc_sequence_stream_infer_client: every request of three sequences sent on one
    stream without waiting; each sequence's answers come back in its own order."""
    answers: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(server.url)
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    string_id = str(uuid.uuid4())
    try:
        for sequence_id, first, sign in ((1000, 0, 1), (1001, 100, -1), (string_id, 20, -1)):
            values = [first] + [sign * v for v in VALUES]
            for i, value in enumerate(values):
                client.async_stream_infer("simple_sequence", value_input(grpcclient, value),
                                          request_id=f"{sequence_id}_{i}", sequence_id=sequence_id,
                                          sequence_start=i == 0, sequence_end=i == len(values) - 1)
        got: dict = {"1000": [], "1001": [], string_id: []}
        for _ in range(3 * (len(VALUES) + 1)):
            result, error = answers.get(timeout=30)
            assert error is None, error
            this_id = result.get_response().id.rsplit("_", 1)[0]
            got[this_id].append(int(result.as_numpy("OUTPUT")[0, 0]))
    finally:
        client.stop_stream()
    assert got["1000"] == expected(1, 1) and got["1001"] == expected(101, -1) and got[string_id] == expected(21, -1)


async def test_state_is_carried_per_sequence_in_order_across_a_pipelined_stream(server):
    """40 sequences of 15 steps interleaved on one asyncio stream, nothing awaited between
    sends: each answer is its own sequence's running sum, so no request ran out of its
    sequence's order and no state crossed sequences, though they batched together."""
    sequences, steps = 40, 15
    rng = np.random.default_rng(7)
    values = rng.integers(-50, 50, size=(sequences, steps))

    async def requests():
        for step in range(steps):
            for s in range(sequences):
                yield {"model_name": "accumulate", "inputs": value_input(aioclient, int(values[s, step])),
                       "request_id": f"{s}:{step}", "sequence_id": 5000 + s, "sequence_start": step == 0,
                       "sequence_end": step == steps - 1}

    got: dict[int, list[int]] = {s: [] for s in range(sequences)}
    async with aioclient.InferenceServerClient(server.url) as client:
        async for result, error in client.stream_infer(requests()):
            assert error is None, error
            s, step = map(int, result.get_response().id.split(":"))
            assert len(got[s]) == step  # this sequence's answers arrive in its order
            got[s].append(int(result.as_numpy("OUTPUT")[0, 0]))
            assert int(result.as_numpy("CORR")[0, 0]) == 5000 + s
            assert int(result.as_numpy("ENDED")[0, 0]) == (step == steps - 1)
            if len(got[s]) == steps and all(len(v) == steps for v in got.values()):
                break
        stats = (await client.get_inference_statistics("accumulate")).model_stats[0]
    assert all(got[s] == list(np.cumsum(values[s])) for s in range(sequences))
    assert stats.execution_count < stats.inference_count  # requests of different sequences batched together


def test_state_outputs_and_controls_are_the_servers_not_the_clients(server):
    client = grpcclient.InferenceServerClient(server.url)
    metadata = client.get_model_metadata("accumulate")
    assert [t.name for t in metadata.inputs] == ["INPUT"]
    assert sorted(t.name for t in metadata.outputs) == ["CORR", "ENDED", "OUTPUT"]  # ACC_OUT stays inside
    start = grpcclient.InferInput("START", [1, 1], "INT32")
    start.set_data_from_numpy(np.ones((1, 1), np.int32))
    with pytest.raises(InferenceServerException, match='input "START".*no such input'):
        client.infer("accumulate", value_input(grpcclient, 1) + [start], sequence_id=9, sequence_start=True)


def test_start_end_and_a_new_start_of_the_same_id(server):
    client = grpcclient.InferenceServerClient(server.url)

    def send(value, **flags):
        return int(client.infer("accumulate", value_input(grpcclient, value), sequence_id=77, **flags)
                   .as_numpy("OUTPUT")[0, 0])

    with pytest.raises(InferenceServerException, match="must specify the START flag on the first request") as e:
        send(1)
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert [send(5, sequence_start=True), send(6), send(7, sequence_end=True)] == [5, 11, 18]
    with pytest.raises(InferenceServerException, match="must specify the START flag"):
        send(1)  # ended: the id is free again
    assert [send(2, sequence_start=True), send(3), send(100, sequence_start=True), send(1)] == [2, 5, 100, 101]
    send(0, sequence_end=True)


def test_misuse_is_refused_naming_the_parameter(server):
    client = grpcclient.InferenceServerClient(server.url)
    with pytest.raises(InferenceServerException, match="must specify a non-zero or non-empty correlation ID"):
        client.infer("accumulate", value_input(grpcclient, 1))
    rows = grpcclient.InferInput("INPUT", [2, 1], "INT32")
    rows.set_data_from_numpy(np.ones((2, 1), np.int32))
    with pytest.raises(InferenceServerException, match="must specify batch-size 1 due to requirements of sequence"):
        client.infer("accumulate", [rows], sequence_id=3, sequence_start=True)
    with pytest.raises(InferenceServerException, match="takes integer correlation IDs"):
        client.infer("accumulate", value_input(grpcclient, 1), sequence_id="abc", sequence_start=True)
    simple = [grpcclient.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
    for tensor in simple:
        tensor.set_data_from_numpy(np.ones((1, 16), np.int32))
    with pytest.raises(InferenceServerException, match=r'parameters\["sequence_id"\].*not a sequence model') as e:
        client.infer("simple", simple, sequence_id=4, sequence_start=True)
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"


def test_idle_sequences_are_released_and_live_ones_are_bounded(server):
    client = grpcclient.InferenceServerClient(server.url)

    def send(sequence_id, value=1, **flags):
        return client.infer("accumulate_bounded", value_input(grpcclient, value), sequence_id=sequence_id, **flags)

    send(1, sequence_start=True)
    time.sleep(0.6)  # past the model's 0.3 s max_sequence_idle_microseconds
    with pytest.raises(InferenceServerException, match="was released after 0.3 s idle"):
        send(1)
    for sequence_id in (11, 12, 13):  # the model holds at most 3 (parameters["max_sequences"])
        send(sequence_id, sequence_start=True)
    with pytest.raises(InferenceServerException, match="holds 3 live sequences, its limit") as e:
        send(14, sequence_start=True)
    assert e.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    send(11, sequence_end=True)  # an end frees a place at once
    assert int(send(14, 4, sequence_start=True).as_numpy("OUTPUT")[0, 0]) == 4
    time.sleep(0.6)  # the idle ones are released: places for new sequences again
    for sequence_id in (21, 22, 23):
        send(sequence_id, sequence_start=True)


@pytest.mark.parametrize("change, message", [
    (lambda c: c.sequence_batching.control_input[0].__setattr__("name", "BEGIN"),
     "sequence_batching names input 'BEGIN', which is not in the model"),
    (lambda c: c.sequence_batching.oldest.__setattr__("preserve_ordering", True),
     "sequence_batching.oldest.preserve_ordering"),
    (lambda c: c.sequence_batching.state[0].__setattr__("data_type", mc.TYPE_FP32),
     "sequence_batching feeds 'ACC' as TYPE_FP32, but the model takes TYPE_INT32"),
    (lambda c: c.sequence_batching.control_input[3].control[0].__setattr__("data_type", mc.TYPE_FP32),
     "a CORRID control's data_type must be one of"),
    (lambda c: c.response_cache.__setattr__("enable", True), "response_cache cannot be enabled on a sequence"),
])
async def test_a_sequence_config_that_cannot_be_served_is_refused_by_name(tmp_path, change, message):
    config = accumulator_config()
    change(config)
    write_version(tmp_path, config, 1, accumulator())
    entry = await load_entry(tmp_path, "accumulate")
    assert entry.state == "UNAVAILABLE" and message in entry.reason


async def test_the_sequencer_runs_in_process_too(tmp_path):
    """The repository's own path (no server): a version's infer with sequence flags."""
    from hanzo.server.models.sequences import SequenceFlags

    write_version(tmp_path, accumulator_config(), 1, accumulator())
    repo = ModelRepository(tmp_path)
    await repo.load_all()
    try:
        version = repo.get("accumulate")
        outs = [await version.infer({"INPUT": np.full((1, 1), v, np.int32)}, sequence=SequenceFlags(
            42, start=i == 0)) for i, v in enumerate((3, 4, 5))]
        assert [int(o["OUTPUT"][0, 0]) for o in outs] == [3, 7, 12] and "ACC_OUT" not in outs[0]
        assert version.sequencer.live == 1
        await asyncio.sleep(0)
    finally:
        await repo.close()


def sequencer(max_sequences: int = 2, max_pending: int = 3, idle_s: float = 60.0):
    from hanzo.server.models.sequence_config import SequenceSpec
    from hanzo.server.models.sequences import Sequencer

    return Sequencer(SequenceSpec("m", True, (), (), idle_s, max_sequences, 0.0, ()), max_pending)


def ones() -> dict[str, np.ndarray]:
    return {"INPUT": np.ones((1, 1), np.int32)}


async def test_a_request_that_fails_ends_its_sequence():
    """The model never saw the failed request: the sequence cannot go on as if it had."""
    from hanzo.server.models.errors import DeadlineExceeded, InvalidArgument
    from hanzo.server.models.sequences import SequenceFlags

    seq = sequencer()

    async def ok(feeds):
        return feeds

    async def expired(feeds):
        raise DeadlineExceeded("in the queue")

    await seq.run(SequenceFlags(5, start=True), ones(), 1, ok)
    with pytest.raises(DeadlineExceeded):
        await seq.run(SequenceFlags(5), ones(), 1, expired)
    with pytest.raises(InvalidArgument, match="must specify the START flag"):
        await seq.run(SequenceFlags(5), ones(), 1, ok)
    assert seq.live == 0


async def test_waiting_requests_of_one_sequence_are_bounded():
    from hanzo.server.models.errors import ResourceExhausted
    from hanzo.server.models.sequences import SequenceFlags

    seq, gate = sequencer(max_pending=3), asyncio.Event()

    async def held(feeds):
        await gate.wait()
        return feeds

    first = asyncio.ensure_future(seq.run(SequenceFlags(1, start=True), ones(), 1, held))
    waiting = [asyncio.ensure_future(seq.run(SequenceFlags(1), ones(), 1, held)) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(ResourceExhausted, match="has 3 requests waiting, its limit"):
        await seq.run(SequenceFlags(1), ones(), 1, held)
    gate.set()
    await asyncio.gather(first, *waiting)


async def test_at_the_bound_idle_sequences_behind_a_busy_one_are_released():
    from hanzo.server.models.sequences import SequenceFlags

    seq, gate = sequencer(max_sequences=2, idle_s=0.05), asyncio.Event()

    async def held(feeds):
        await gate.wait()
        return feeds

    async def ok(feeds):
        return feeds

    busy = asyncio.ensure_future(seq.run(SequenceFlags(1, start=True), ones(), 1, held))  # oldest, running
    await asyncio.sleep(0)
    await seq.run(SequenceFlags(2, start=True), ones(), 1, ok)  # then abandoned
    await asyncio.sleep(0.1)
    await seq.run(SequenceFlags(3, start=True), ones(), 1, ok)  # 2 is released though 1 is older and busy
    gate.set()
    await busy
