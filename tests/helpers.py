"""Test models and a real server process on a free loopback port."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from tritonclient.grpc import model_config_pb2 as mc

from hanzo.loadtest.readiness import wait_until_ready
from hanzo.loadtest.tanh_chain import tanh_chain
from hanzo.loadtest.targets import free_port
from hanzo.training.repository_writer import write_version

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SLOW_WIDTH = 1024
# A start or a build that has neither finished nor failed by then has hung.
HANG_GUARD_S = float(os.environ.get("HANZO_TEST_HANG_GUARD_S", "1800"))


def until(ask, done, what: str = "the answer to change", process: "ServerProcess | None" = None):
    """`ask()` again and again until `done(answer)`: for what the server picks up on its own
    schedule (a file it looks at once a second). With `process`, fails at once if it exits.
    The bound only catches a hang."""
    import time

    end = time.monotonic() + HANG_GUARD_S
    while True:
        if process is not None:
            assert process.proc.poll() is None, process.log()
        answer = ask()
        if done(answer):
            return answer
        assert time.monotonic() < end, f"waited for {what}"
        time.sleep(0.05)


def metric_samples(port: int, name: str, labels: dict[str, str]) -> float:
    """The sum of a metric's samples on a server's metrics port whose labels include `labels`
    (0 where none has them yet)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name and labels.items() <= sample.labels.items())


def drift_inputs(port: int, name: str, model: str) -> dict[str, float]:
    """A drift gauge (hanzo_drift_psi or _ks) per input of a model's version 1."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {sample.labels["input"]: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == name and sample.labels["model"] == model
            and sample.labels["version"] == "1"}


def shared_data(*parts: str) -> pytest.MarkDecorator:
    """Skip where a shared data set is absent (a fresh clone without ../shared), naming the path.
    CI has ../shared, and there (HANZO_CI=1) such a skip fails instead (conftest.py)."""
    path = SHARED_DATA.joinpath(*parts)
    return pytest.mark.skipif(not path.exists(), reason=f"{path} is absent: the shared data sets are not on "
                                                        f"this machine")


def slow_model(layers: int = 150, seed: int = 0) -> onnx.ModelProto:
    """x [N, 1024] FP32 -> y [N, 1024]: `layers` chained MatMul+Tanh with one shared weight,
    tens of milliseconds a batch on one thread: long enough to watch a queue form."""
    return tanh_chain(SLOW_WIDTH, layers, seed, "slow")


def slow_config(name: str = "slow", max_batch_size: int = 8, delay_us: int = 0, max_queue_size: int = 0,
                preferred: tuple[int, ...] = (), timeout_us: int = 0) -> mc.ModelConfig:
    config = mc.ModelConfig(name=name, backend="onnxruntime", max_batch_size=max_batch_size)
    config.dynamic_batching.max_queue_delay_microseconds = delay_us
    config.dynamic_batching.preferred_batch_size.extend(preferred)
    policy = config.dynamic_batching.default_queue_policy
    policy.max_queue_size = max_queue_size
    if timeout_us:
        policy.default_timeout_microseconds = timeout_us
        policy.timeout_action = mc.ModelQueuePolicy.REJECT
    return config


def write_slow_model(root: Path, **kwargs) -> Path:
    return write_version(root, slow_config(**kwargs), 1, slow_model())


class ServerProcess:
    """`hanzo serve` in a child process, ready when the KServe ServerReady says so. Its log
    (stderr) and what it prints for people (stdout) are kept apart, as a user sees them."""

    def __init__(self, model_repo: Path, *extra: str, cwd: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"127.0.0.1:{self.port}"
        self.log_path = Path(model_repo).parent / f"server-{self.port}.log"
        self.out_path = Path(model_repo).parent / f"server-{self.port}.out"
        self._log = open(self.log_path, "w")
        self._out = open(self.out_path, "w")
        if "--data-dir" not in extra:
            extra = ("--data-dir", str(Path(model_repo).parent / f"data-{self.port}"), *extra)
        if "--drain-delay" not in extra:  # no load balancer to wait for; the drain tests set their own
            extra = ("--drain-delay", "0", *extra)
        # the metrics port where the caller named one (metric_samples reads it)
        self.metrics_port = int(extra[extra.index("--metrics-port") + 1]) if "--metrics-port" in extra else None
        self.http_port = int(extra[extra.index("--http-port") + 1]) if "--http-port" in extra else None
        cmd = [sys.executable, "-m", "hanzo.server.commands", "serve", "--host", "127.0.0.1", "--port",
               str(self.port), "--model-repo", str(model_repo), *extra]
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=self._log, cwd=cwd,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def wait_ready(self) -> "ServerProcess":
        """Until the server says it is ready, or exits. The bound only catches a hang: a start
        has no deadline here, however loaded the machine."""
        wait_until_ready(self.url, self.proc, HANG_GUARD_S, lambda: "\n" + self.log())
        return self

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def out(self) -> str:
        return self.out_path.read_text()

    def terminate(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        self._out.close()
        return self.proc.returncode


def simulated_world(directory: Path, days: int, **config) -> tuple[Path, list[dict]]:
    """A simulated marketplace written to `directory`, and its events before the end of its
    last day (chargebacks land weeks later)."""
    from hanzo.server.features.formats import read_records
    from hanzo.training.simulator import SimulationConfig, simulate

    sim = simulate(SimulationConfig(days=days, **config), directory)
    end = sim.start_ms + days * 86_400_000
    return directory, [r for r in read_records(directory / "events.jsonl.gz") if r["timestamp"] < end]


def opened_store(data_dir: Path, catalog: Path | None = None, **options):
    """An embedded (or configured) FeatureService, opened on `data_dir`."""
    from hanzo.server.features.service import FeatureService, FeatureStoreConfig

    svc = FeatureService(FeatureStoreConfig(data_dir=data_dir, catalog=catalog, **options))
    svc.open()
    return svc


def user_feature_values(svc) -> "np.ndarray":
    """Every user's non-sequence features, in the store's user order."""
    users = svc.store.entities["user"].keys
    names = [n for n in svc.store.feature_names("user") if svc.store.features[n].aggregation != "sequence"]
    return svc.store.gather("user", users, names)[0]


async def load_entry(root: Path, name: str):
    """Load a repository at `root` and return `name`'s index entry (state and reason)."""
    from hanzo.server.models import ModelRepository

    repo = ModelRepository(root)
    await repo.load_all()
    try:
        return next(e for e in repo.index() if e.name == name)
    finally:
        await repo.close()
