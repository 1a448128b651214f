"""Shadow copies: the share taken evenly, the CPU budget and the in-flight bound respected,
each copy started only after the primary answer, its answer logged with both versions and the
request id, and a candidate's failure logged, never raised."""
import asyncio
import time
import json

import numpy as np
import pytest

from hanzo.server.surfaces.shadow import STATS, Shadow, ShadowConfig, ShadowLog
from test_production_pointer import with_candidate
from test_repository import FEATURES


@pytest.fixture
async def candidate(tmp_path):
    repo = await with_candidate(tmp_path / "repo")
    yield repo.candidate("risk")
    await repo.close()


def lines(directory):
    path = directory / "risk.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def score(version):
    return {"score": float((await version.infer({"features": FEATURES}))["score"][0, 0])}


async def test_a_share_of_requests_is_copied_after_the_answer_and_logged(candidate, tmp_path):
    shadow = Shadow(ShadowConfig(share=0.25, cpu_share=1.0), tmp_path / "shadow")
    order = []

    async def run(version, pause):
        order.append("shadow")
        return await score(version)

    before = dict(STATS.skipped)
    for i in range(40):
        shadow.offer("risk", candidate, f"r{i}", {"primary_version": 1, "primary": 0.5}, run)
        order.append("primary answered")  # what the caller got before any copy ran
        await asyncio.sleep(0)
    await asyncio.sleep(0.2)
    await shadow.close()
    logged = lines(tmp_path / "shadow")
    assert len(logged) == 10  # every 4th, evenly
    assert order.index("shadow") > order.index("primary answered")
    assert {r["request_id"] for r in logged} == {f"r{i}" for i in range(3, 40, 4)}
    first = logged[0]
    assert first["candidate_version"] == 2 and first["primary_version"] == 1 and first["candidate_ms"] >= 0
    expected = float((await candidate.infer({"features": FEATURES}))["score"][0, 0])
    assert np.isclose(first["candidate"]["score"], expected)
    assert STATS.skipped[("risk", "share")] - before.get(("risk", "share"), 0) == 30


async def test_the_budget_and_the_in_flight_bound_skip_copies(candidate, tmp_path):
    now = [0.0]
    shadow = Shadow(ShadowConfig(share=1.0, cpu_share=0.1, max_in_flight=2), tmp_path / "shadow", clock=lambda: now[0])
    release = asyncio.Event()

    async def slow(version, pause):
        await release.wait()
        return {"score": 0.0}

    before = dict(STATS.skipped)
    for i in range(5):
        shadow.offer("risk", candidate, f"r{i}", {}, slow)
    await asyncio.sleep(0.01)
    assert STATS.skipped[("risk", "in_flight")] - before.get(("risk", "in_flight"), 0) == 3
    release.set()
    await asyncio.sleep(0.01)
    # the two copies took real time, far more than the 0.1 s banked at a frozen clock
    shadow._budget.charge(1.0)
    shadow.offer("risk", candidate, "r-late", {}, slow)
    assert STATS.skipped[("risk", "cpu_budget")] - before.get(("risk", "cpu_budget"), 0) == 1
    now[0] += 20.0  # refilled, up to what one cpu_share second banks
    shadow.offer("risk", candidate, "r-refilled", {}, slow)
    await asyncio.sleep(0.01)
    await shadow.close()
    assert [r["request_id"] for r in lines(tmp_path / "shadow")] == ["r0", "r1", "r-refilled"]


async def test_a_failing_candidate_is_logged_not_raised(candidate, tmp_path):
    shadow = Shadow(ShadowConfig(share=1.0), tmp_path / "shadow")

    async def broken(version, pause):
        raise RuntimeError("the candidate wants another input")

    shadow.offer("risk", candidate, "r1", {"primary": 0.1}, broken)
    shadow.offer("risk", None, "r2", {}, broken)  # no candidate: nothing to copy to
    await asyncio.sleep(0.05)
    await shadow.close()
    logged = lines(tmp_path / "shadow")
    assert [r["request_id"] for r in logged] == ["r1"]
    assert logged[0]["candidate_error"] == "RuntimeError"  # its message is not logged: it may quote a request


def test_shadow_options_are_checked():
    with pytest.raises(ValueError, match="share must be in"):
        ShadowConfig(share=1.5)
    with pytest.raises(ValueError, match="cpu_share"):
        ShadowConfig(cpu_share=0)


async def test_a_copy_on_a_server_that_stays_busy_is_given_up(candidate, tmp_path):
    never = asyncio.Event()
    shadow = Shadow(ShadowConfig(share=1.0, max_wait_s=0.05), tmp_path / "shadow", quiet=never.wait)
    shadow.busy = lambda: True  # a call is always in flight
    before = STATS.skipped[("risk", "stale")]
    shadow.offer("risk", candidate, "r1", {}, score_with_pause)
    await asyncio.sleep(0.3)
    await shadow.close()
    assert STATS.skipped[("risk", "stale")] - before == 1 and lines(tmp_path / "shadow") == []


async def score_with_pause(version, pause):
    await pause()
    return await score(version)


def test_the_log_is_rotated_at_its_size_keeping_one_older_file(tmp_path):
    log = ShadowLog(tmp_path / "shadow", capacity=100, max_bytes=1000)
    line = b'{"request_id":"' + b"x" * 80 + b'"}\n'  # 98 bytes
    for _ in range(25):  # mostly one line a batch: a file is rotated once a batch takes it to 1000 bytes
        log.write("risk", line)
        time.sleep(0.005)
    log.close()
    current, older = tmp_path / "shadow" / "risk.jsonl", tmp_path / "shadow" / "risk.jsonl.1"
    kept = [older.read_bytes(), current.read_bytes() if current.exists() else b""]
    assert len(kept[0]) >= 1000 and len(kept[1]) < 1000  # the older file full, the current one not yet
    assert all(part == line * (len(part) // len(line)) for part in kept)  # whole lines only
    with pytest.raises(ValueError, match="max_file_mb"):
        ShadowConfig(max_file_mb=0)
