"""The dynamic batcher against a real slow ONNX model (tens of ms a batch): batches form up
to max_batch_size, a lone request leaves at once, a partial batch waits out the queue delay
only while traffic flows, a full queue sheds, expired and cancelled requests never run."""
import asyncio
import time

import numpy as np
import pytest
from helpers import SLOW_WIDTH, write_slow_model

from hanzo.server.models.errors import DeadlineExceeded, HanzoError, ResourceExhausted
from hanzo.server.models import ModelRepository


async def load_slow(tmp_path, **kwargs):
    repo = ModelRepository(tmp_path / "repo")
    write_slow_model(repo.root, **kwargs)
    await repo.load_all()
    return repo, repo.get("slow")


def rows(n: int, value: float = 0.5) -> dict[str, np.ndarray]:
    return {"x": np.full((n, SLOW_WIDTH), value, dtype=np.float32)}


async def test_batches_form_up_to_max_batch_size(tmp_path):
    repo, model = await load_slow(tmp_path, max_batch_size=8)
    inputs = [rows(1, v) for v in np.linspace(-1, 1, 20)]
    results = await asyncio.gather(*(model.infer(x) for x in inputs))
    # Each answer is its own request's rows, whatever batch it rode in.
    alone = [model.backend.run(0, x)["y"] for x in inputs[:3]]
    for got, expected in zip(results, alone):
        np.testing.assert_allclose(got["y"], expected, rtol=1e-5, atol=1e-6)
    stats = model.stats
    assert stats.inference_count == 20
    sizes = {size: d.compute_infer.count for size, d in stats.batches.items()}
    assert max(sizes) == 8, sizes  # the queue filled whole batches behind the first
    assert all(size <= 8 for size in sizes)
    assert stats.execution_count == sum(sizes.values()) < 20
    await repo.close()


async def test_lone_request_leaves_at_once_despite_queue_delay(tmp_path):
    delay_us = 2_000_000
    repo, model = await load_slow(tmp_path, max_batch_size=8, delay_us=delay_us)
    await model.infer(rows(1))
    assert model.stats.execution_count == 1
    # The idle model did not hold the request for the 2 s delay.
    assert model.stats.queue.ns < delay_us * 1000 / 4
    await repo.close()


async def test_partial_batch_waits_for_the_delay_while_traffic_flows(tmp_path):
    delay_us = 300_000
    repo, model = await load_slow(tmp_path, max_batch_size=8, delay_us=delay_us)
    first = asyncio.ensure_future(model.infer(rows(1)))
    await asyncio.sleep(0.005)
    # Arrives 5 ms after the first, while it runs: traffic is flowing, so it waits for
    # company up to the delay rather than leaving alone.
    second = asyncio.ensure_future(model.infer(rows(1)))
    await asyncio.sleep(0.1)
    assert first.done() and not second.done()
    third = asyncio.ensure_future(model.infer(rows(1)))
    await asyncio.gather(first, second, third)
    assert model.stats.batches[2].compute_infer.count == 1  # second and third left together
    await repo.close()


async def test_full_batch_leaves_without_waiting_out_the_delay(tmp_path):
    delay_us = 5_000_000
    repo, model = await load_slow(tmp_path, max_batch_size=4, delay_us=delay_us)
    started = time.monotonic()
    await asyncio.gather(*(model.infer(rows(1)) for _ in range(8)))
    assert time.monotonic() - started < delay_us / 1e6 / 2
    assert model.stats.batches[4].compute_infer.count == 2
    await repo.close()


async def test_preferred_batch_size_cuts_the_batch(tmp_path):
    repo, model = await load_slow(tmp_path, max_batch_size=8, preferred=(2, 4))
    await asyncio.gather(*(model.infer(rows(1)) for _ in range(8)))
    # First alone (idle), then 7 queued: a batch of 4, then 2, then the last alone.
    assert set(model.stats.batches) <= {1, 2, 4}
    assert model.stats.batches[4].compute_infer.count >= 1
    await repo.close()


async def test_full_queue_sheds_with_resource_exhausted(tmp_path):
    repo, model = await load_slow(tmp_path, max_batch_size=1, max_queue_size=2)
    results = await asyncio.gather(*(model.infer(rows(1)) for _ in range(6)), return_exceptions=True)
    shed = [r for r in results if isinstance(r, ResourceExhausted)]
    served = [r for r in results if isinstance(r, dict)]
    assert shed and served and len(shed) + len(served) == 6
    assert "queue full" in str(shed[0])
    assert model.stats.failures["queue_full"] == len(shed)
    assert model.stats.inference_count == len(served)
    await repo.close()


async def test_expired_deadline_never_runs(tmp_path):
    repo, model = await load_slow(tmp_path, max_batch_size=1)
    busy = asyncio.ensure_future(model.infer(rows(1)))
    await asyncio.sleep(0)
    late = model.infer(rows(1), deadline=time.monotonic() + 0.002)
    with pytest.raises(DeadlineExceeded):
        await late
    await busy
    with pytest.raises(DeadlineExceeded):
        await model.infer(rows(1), deadline=time.monotonic() - 1)
    assert model.stats.inference_count == 1
    assert model.stats.failures["deadline"] == 2
    await repo.close()


async def test_queue_policy_timeout_rejects_in_the_queue(tmp_path):
    repo, model = await load_slow(tmp_path, max_batch_size=1, timeout_us=5_000)
    busy = asyncio.ensure_future(model.infer(rows(1)))
    await asyncio.sleep(0)
    with pytest.raises(DeadlineExceeded, match="timed out in the queue"):
        await model.infer(rows(1))
    await busy
    assert model.stats.inference_count == 1
    await repo.close()


async def test_cancelled_request_is_dropped_before_its_batch_runs(tmp_path):
    repo, model = await load_slow(tmp_path, max_batch_size=1)
    busy = asyncio.ensure_future(model.infer(rows(1)))
    await asyncio.sleep(0)
    doomed = asyncio.ensure_future(model.infer(rows(1)))
    await asyncio.sleep(0)
    doomed.cancel()
    await busy
    await model.batcher.drain()
    assert model.stats.inference_count == 1
    await repo.close()


async def test_backend_failure_fails_its_batch_and_never_hangs(tmp_path):
    repo, model = await load_slow(tmp_path, max_batch_size=4)

    def broken(instance, feeds):
        raise RuntimeError("device lost")

    model.batcher._run_batch = broken
    results = await asyncio.wait_for(
        asyncio.gather(*(model.infer(rows(1)) for _ in range(5)), return_exceptions=True), 10)
    assert all(isinstance(r, HanzoError) and "device lost" in str(r) for r in results)
    assert model.stats.failures["backend"] == 5
    await repo.close()


async def test_inline_model_answers_at_once_and_batches_only_while_traffic_flows(tmp_path):
    repo = ModelRepository(tmp_path / "repo")
    from helpers import slow_config, slow_model

    from hanzo.training.repository_writer import write_version

    config = slow_config(max_batch_size=8, delay_us=50_000)
    config.parameters["execution"].string_value = "inline"
    write_version(repo.root, config, 1, slow_model(layers=2))
    await repo.load_all()
    model = repo.get("slow")
    assert model.batcher.inline
    await asyncio.gather(*(model.infer(rows(1)) for _ in range(5)))
    # The first found the model idle and ran within its call; the other four arrived right
    # behind it, so they waited (up to the 50 ms delay) and ran as one batch.
    assert {size: d.compute_infer.count for size, d in model.stats.batches.items()} == {1: 1, 4: 1}
    await repo.close()


# ---------------------------------------------------------------- bounded queue, cancelled runs

def gated_batcher(max_batch_size: int = 1, max_queue_size: int = 0):
    """A real DynamicBatcher over a backend that waits on `gate` (a remote model's shape): a
    batch holds its instance until the test lets it go."""
    from hanzo.server.models.batcher import DynamicBatcher
    from hanzo.server.models.config import BatchingPolicy
    from hanzo.server.models.statistics import ModelStatistics

    gate = asyncio.Event()
    calls = []

    async def run(instance, feeds):
        calls.append(len(feeds["x"]))
        if len(calls) == 1 and getattr(gate, "cancel_first", False):
            raise asyncio.CancelledError()  # the remote call torn down under the batch
        await gate.wait()
        return {"y": feeds["x"] * 2}

    policy = BatchingPolicy(max_batch_size, True, (), 0.0, max_queue_size, None, False, 1)
    batcher = DynamicBatcher("gated", policy, lambda i, f: None, ModelStatistics(), run_batch_async=run)
    return batcher, gate, calls


def one_row(value: float = 1.0) -> dict[str, np.ndarray]:
    return {"x": np.full((1, 2), value, dtype=np.float32)}


async def test_default_queue_is_bounded_and_sheds(tmp_path):
    from hanzo.server.models.batcher import DEFAULT_QUEUE_BATCHES

    batcher, gate, _ = gated_batcher(max_batch_size=1)
    assert batcher.max_queue_size == DEFAULT_QUEUE_BATCHES
    callers = [asyncio.ensure_future(batcher.infer(one_row(), 1)) for _ in range(3 * DEFAULT_QUEUE_BATCHES)]
    await asyncio.sleep(0.01)
    gate.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    shed = [r for r in results if isinstance(r, ResourceExhausted)]
    served = [r for r in results if isinstance(r, dict)]
    # all arrive in one loop turn: the bound's worth queue, the rest are shed at once
    assert len(served) == DEFAULT_QUEUE_BATCHES and len(shed) == len(results) - len(served)
    assert "queue full" in str(shed[0])
    await batcher.close()
    # a config's own bound still wins; the default scales with the batch size
    assert gated_batcher(max_queue_size=5)[0].max_queue_size == 5
    assert gated_batcher(max_batch_size=8)[0].max_queue_size == 8 * DEFAULT_QUEUE_BATCHES
    repo, model = await load_slow(tmp_path, max_batch_size=8)
    assert model.batcher.max_queue_size == 8 * DEFAULT_QUEUE_BATCHES
    await repo.close()


async def test_a_cancelled_batch_run_fails_its_callers_and_the_batcher_goes_on(caplog):
    batcher, gate, calls = gated_batcher()
    gate.cancel_first = True
    gate.set()
    with pytest.raises(HanzoError, match="cancelled"):
        await asyncio.wait_for(batcher.infer(one_row(), 1), 5)
    out = await asyncio.wait_for(batcher.infer(one_row(3.0), 1), 5)  # the instance was freed
    assert out["y"][0, 0] == 6.0 and len(calls) == 2
    assert "Exception in callback" not in caplog.text
    await batcher.close()


async def test_a_cancelled_waiting_caller_leaves_the_batcher_serving(caplog):
    batcher, gate, calls = gated_batcher(max_batch_size=1)
    running = asyncio.ensure_future(batcher.infer(one_row(1.0), 1))
    await asyncio.sleep(0.01)  # the first holds the only instance
    waiting = [asyncio.ensure_future(batcher.infer(one_row(v), 1)) for v in (2.0, 3.0)]
    await asyncio.sleep(0.01)
    waiting[0].cancel()
    await asyncio.sleep(0)
    gate.set()
    assert (await asyncio.wait_for(running, 5))["y"][0, 0] == 2.0
    assert (await asyncio.wait_for(waiting[1], 5))["y"][0, 0] == 6.0
    assert waiting[0].cancelled()
    assert (await asyncio.wait_for(batcher.infer(one_row(4.0), 1), 5))["y"][0, 0] == 8.0
    assert len(calls) == 3  # the cancelled request never ran
    assert "Exception in callback" not in caplog.text
    await batcher.close()


# ---------------------------------------------------------------- priority levels

async def test_higher_priority_requests_leave_the_queue_first():
    """dynamic_batching priority_levels 2, default 2: while the one instance is busy, three
    default requests then two at level 1 queue; the level-1 pair forms the next batch."""
    from hanzo.server.models.batcher import DynamicBatcher
    from hanzo.server.models.config import BatchingPolicy
    from hanzo.server.models.errors import InvalidArgument
    from hanzo.server.models.statistics import ModelStatistics

    gate, batches = asyncio.Event(), []

    async def run(instance, feeds):
        batches.append(sorted(feeds["x"][:, 0].tolist()))
        await gate.wait()
        return {"y": feeds["x"]}

    policy = BatchingPolicy(2, True, (), 0.0, 0, None, False, 1, priority_levels=2, default_priority_level=2)
    batcher = DynamicBatcher("levels", policy, lambda i, f: None, ModelStatistics(), run_batch_async=run)
    first = asyncio.ensure_future(batcher.infer(one_row(0), 1, level=batcher.level(0)))
    await asyncio.sleep(0.01)  # the first batch holds the instance
    low = [asyncio.ensure_future(batcher.infer(one_row(v), 1, level=batcher.level(0))) for v in (1, 2, 3)]
    high = [asyncio.ensure_future(batcher.infer(one_row(v), 1, level=batcher.level(1))) for v in (8, 9)]
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.gather(first, *low, *high)
    assert batches == [[0.0], [8.0, 9.0], [1.0, 2.0], [3.0]]
    with pytest.raises(InvalidArgument, match=r"3 is not a priority level of model 'levels' \(levels 1..2"):
        batcher.level(3)
    await batcher.close()
    plain = gated_batcher()[0]
    with pytest.raises(InvalidArgument, match="has no priority levels"):
        plain.level(1)
    assert plain.level(0) == 0


async def test_dead_requests_at_a_lower_level_do_not_fill_the_queue():
    """Requests that timed out at level 2 while level 1 kept the head busy are dropped when
    the queue looks full, not counted against its bound."""
    from hanzo.server.models.batcher import DynamicBatcher
    from hanzo.server.models.config import BatchingPolicy
    from hanzo.server.models.statistics import ModelStatistics

    gate = asyncio.Event()

    async def run(instance, feeds):
        await gate.wait()
        return {"y": feeds["x"]}

    policy = BatchingPolicy(1, True, (), 0.0, 4, None, False, 1, priority_levels=2, default_priority_level=2)
    batcher = DynamicBatcher("dead", policy, lambda i, f: None, ModelStatistics(), run_batch_async=run)
    running = asyncio.ensure_future(batcher.infer(one_row(), 1, level=1))
    await asyncio.sleep(0.01)
    high = asyncio.ensure_future(batcher.infer(one_row(), 1, level=1))
    low = [asyncio.ensure_future(batcher.infer(one_row(), 1, level=2)) for _ in range(3)]
    await asyncio.sleep(0.01)
    for caller in low:  # their callers went away
        caller.cancel()
    await asyncio.sleep(0.01)
    again = [asyncio.ensure_future(batcher.infer(one_row(), 1, level=2)) for _ in range(3)]
    await asyncio.sleep(0.01)
    gate.set()
    results = await asyncio.gather(running, high, *again)
    assert all(isinstance(r, dict) for r in results)
    await batcher.close()
