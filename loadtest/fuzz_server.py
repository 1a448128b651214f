"""The server a fuzz or drain run loads: `hanzo serve` on the demo world, started in a work
folder that may be reused (only the first start builds the world), its log on stderr kept in a
file; or a server someone else started, known by its address and pid. Also what is read off
it: resident memory, log and data sizes, whether it still answers."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hanzo.v1 import commerce_pb2, commerce_pb2_grpc

from .readiness import wait_until_ready
from .targets import free_port

# A first start builds the demo world (tens of seconds, minutes on a loaded machine).
START_LIMIT_S = 900.0


def rss_kib(pid: int | None) -> int | None:
    """VmRSS of a process in KiB, or None when it is unknown or gone."""
    if not pid:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def size_bytes(path: Path | None) -> int | None:
    """A file's size, or everything under a folder added up; None when unknown."""
    if path is None or not path.exists():
        return None
    if path.is_file():
        return path.stat().st_size
    total = 0
    for item in path.rglob("*"):
        try:
            total += item.stat().st_size if item.is_file() else 0
        except OSError:  # a file renamed away while we walk
            pass
    return total


@dataclass
class Served:
    """What the tools know of the server under test."""
    url: str
    pid: int | None = None
    log_path: Path | None = None
    data_dir: Path | None = None
    demo: dict = field(default_factory=dict)  # the demo world's manifest (demo.json), when found
    process: subprocess.Popen | None = None

    def rss_kib(self) -> int | None:
        return rss_kib(self.pid)

    def log_bytes(self) -> int | None:
        return size_bytes(self.log_path)

    def data_bytes(self) -> int | None:
        return size_bytes(self.data_dir)


def demo_manifest(world: Path) -> dict:
    try:
        return json.loads((world / "demo.json").read_text())
    except (OSError, ValueError):
        return {}


def start_demo(workdir: Path, log_name: str = "serve.log", extra: tuple[str, ...] = (),
               cpus: tuple[int, ...] = (), tls_ca: str = "") -> Served:
    """`hanzo serve` on the demo world in `workdir` (built there by the first start), on a free
    loopback port; returns once it is ready. The log (stderr) goes to workdir/`log_name`.
    `cpus`: run it on those CPUs only (taskset -c), away from a load generator on the others.
    `tls_ca`: the server speaks TLS (`extra` says how); readiness is asked over TLS, trusting it."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = workdir / log_name
    cmd = [sys.executable, "-m", "hanzo.server.commands", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--model-repo", str(workdir / "model_repo"), "--data-dir", str(workdir / "data"), *extra]
    if cpus:
        cmd = ["taskset", "-c", ",".join(map(str, cpus)), *cmd]
    with open(log_path, "w") as log, open(workdir / (log_name + ".out"), "w") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=log, cwd=workdir,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"127.0.0.1:{port}"
    try:
        wait_until_ready(url, process, START_LIMIT_S, lambda: _tail(log_path), tls_ca=tls_ca)
    except BaseException:
        stop(process)
        raise
    return Served(url, process.pid, log_path, workdir / "data", demo_manifest(workdir / "demo_world"), process)


def stop(process: subprocess.Popen | None, timeout: float = 60.0) -> int | None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout`; the exit status."""
    if process is None:
        return None
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return "\n" + path.read_text()[-chars:]
    except OSError:
        return ""


def alive(served: Served, timeout: float = 5.0) -> dict:
    """Whether the server still answers: a health check and one valid Recommend."""
    channel = grpc.insecure_channel(served.url)
    result: dict = {"health": None, "recommend": None}
    try:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        result["health"] = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    except grpc.RpcError as exc:
        result["health"] = exc.code().name
    user = served.demo.get("user_id", "u00001")
    try:
        answer = commerce_pb2_grpc.CommerceStub(channel).Recommend(
            commerce_pb2.RecommendRequest(user_id=user, k=10), timeout=timeout)
        result["recommend"] = f"OK ({len(answer.items)} items)"
    except grpc.RpcError as exc:
        result["recommend"] = f"{exc.code().name}: {(exc.details() or '')[:200]}"
    finally:
        channel.close()
    result["process_running"] = served.process.poll() is None if served.process is not None else (
        served.pid is None or Path(f"/proc/{served.pid}").exists())
    result["alive"] = (result["health"] == "SERVING" and str(result["recommend"]).startswith("OK")
                       and result["process_running"])
    return result
