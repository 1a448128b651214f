"""Broken model versions against a real server: an explicit load answers the failure, the
index says why, a restart falls back from a broken newest version, health and ServerReady
are false while a model has no version that loads, load names are names and not paths, and
the poller backs off an unchanged broken version. Each step is recorded with the gRPC code
and message answered, the index, health and ServerReady after it; the "verdict" holds one
boolean per expectation and the command exits 1 when any is false.

    python -m hanzo.loadtest.model_loads --out loadtest/reports/model-loads.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import tritonclient.grpc as tc
from google.protobuf import text_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hanzo.training.repository_writer import write_version
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import InferenceServerException

from .tanh_chain import tanh_chain
from .reports import write_report
from .targets import free_port

WIDTH = 4
START_LIMIT_S = 120.0  # a start of two tiny models takes seconds; past this it hung
STOP_LIMIT_S = 30.0
CALL_LIMIT_S = 10.0
REASON_CHARS = 300
GARBAGE = b"\x00garbage, not an onnx model\xff" * 8
BAD_CONFIG = "max_batch_size: [\n"
NOT_MODEL_NAMES = ("", ".", "..", "../x", "/etc", "nope")


# ---------------------------------------------------------------------- the repository

def tiny_model(seed: int) -> Any:
    """x [n, 4] FP32 -> y = tanh(x @ w): valid, and built in milliseconds."""
    return tanh_chain(WIDTH, 1, seed, "tiny")


def model_config(name: str) -> mc.ModelConfig:
    return mc.ModelConfig(name=name, backend="onnxruntime", max_batch_size=8)  # version_policy latest, 1


def write_good(root: Path, name: str, version: int) -> None:
    write_version(root, model_config(name), version, tiny_model(seed=version))


def corrupt(root: Path, name: str, version: int) -> None:
    folder = root / name / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(GARBAGE)


def fix_config(root: Path, name: str) -> None:
    (root / name / "config.pbtxt").write_text(text_format.MessageToString(model_config(name)))


# ---------------------------------------------------------------------- the server

class Server:
    """`hanzo serve` as a child process on a free loopback port, its JSON log on a file."""

    def __init__(self, root: Path, work: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"127.0.0.1:{self.port}"
        self.log_path = work / f"server-{self.port}.log"
        # Held open for the child's whole life and closed in stop().
        self._log = open(self.log_path, "w")  # noqa: SIM115
        self._out = open(work / f"server-{self.port}.out", "w")  # noqa: SIM115
        cmd = [sys.executable, "-m", "hanzo.server.commands", "serve", "--host", "127.0.0.1", "--port",
               str(self.port), "--model-repo", str(root), "--no-demo-models", "--data-dir",
               str(work / f"data-{self.port}"), "--drain-delay", "0", *extra]
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=self._log,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.client = tc.InferenceServerClient(self.url)
        self._channel = grpc.insecure_channel(self.url)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def wait_loaded(self, limit_s: float = START_LIMIT_S) -> float:
        """Until the start-up load is done (the "serving" log line: ServerReady stays false
        where a model has no version that loads); returns the seconds it took."""
        start = time.monotonic()
        while time.monotonic() - start < limit_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            if any(e.get("msg") == "serving" for e in self.log()):
                return time.monotonic() - start
            time.sleep(0.05)
        raise TimeoutError(f"the server did not finish loading in {limit_s} s:\n{self.log_path.read_text()}")

    def log(self) -> list[dict]:
        self._log.flush()
        entries = []
        for line in self.log_path.read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue  # a line that is not the structured log (a native library's own words)
        return entries

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_LIMIT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_LIMIT_S)
        self.client.close()
        self._channel.close()
        self._log.close()
        self._out.close()
        return self.proc.returncode

    # -- what it answers

    def health(self) -> str:
        try:
            reply = self._health.Check(health_pb2.HealthCheckRequest(service=""), timeout=CALL_LIMIT_S)
        except grpc.RpcError as exc:
            return f"error {exc.code().name}"
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def server_ready(self) -> bool | None:
        try:
            return self.client.is_server_ready(client_timeout=CALL_LIMIT_S)
        except InferenceServerException:
            return None

    def index(self) -> list[dict]:
        models = self.client.get_model_repository_index(as_json=True, client_timeout=CALL_LIMIT_S).get("models", [])
        return [{"name": m.get("name", ""), "version": m.get("version", ""), "state": m.get("state", ""),
                 "reason": m.get("reason", "")[:REASON_CHARS]} for m in models]

    def load(self, name: str) -> tuple[str, str]:
        """RepositoryModelLoad: (code, message), code OK where it loaded."""
        return _answer(lambda: self.client.load_model(name, client_timeout=CALL_LIMIT_S))

    def infer(self, name: str) -> dict:
        """ModelInfer of one row: its code, and the version that answered or the message."""
        tensor = tc.InferInput("x", [1, WIDTH], "FP32")
        tensor.set_data_from_numpy(np.linspace(-1, 1, WIDTH, dtype=np.float32).reshape(1, WIDTH))
        found: dict = {}
        code, message = _answer(lambda: found.setdefault("r", self.client.infer(name, [tensor],
                                                                                 client_timeout=CALL_LIMIT_S)))
        if code != "OK":
            return {"model": name, "code": code, "message": message}
        return {"model": name, "code": code, "model_version": found["r"].get_response().model_version}


def _answer(call: Callable[[], Any]) -> tuple[str, str]:
    try:
        call()
    except InferenceServerException as exc:
        return str(exc.status() or "").removeprefix("StatusCode."), exc.message() or ""
    return "OK", ""


# ---------------------------------------------------------------------- recording

def entry(index: list[dict], name: str, version: str) -> dict:
    return next((e for e in index if e["name"] == name and e["version"] == version), {})


def record(server: Server, step: str, did: str, start: float, answer: tuple[str, str] | None = None,
           **more: Any) -> dict:
    """A step as the report keeps it: what was done, what the server answered, and its index,
    health and ServerReady after it."""
    found = {"step": step, "did": did}
    if answer is not None:
        found["code"], found["message"] = answer
    found.update(more)
    found.update({"index": server.index(), "health": server.health(), "server_ready": server.server_ready(),
                  "elapsed_s": round(time.monotonic() - start, 3)})
    return found


def logged(server: Server, msg: str, model: str) -> list[dict]:
    return [e for e in server.log() if e.get("msg") == msg and e.get("model") == model]


# ---------------------------------------------------------------------- the steps

def step_start(root: Path, work: Path, verdict: dict) -> tuple[Server, dict]:
    start = time.monotonic()
    write_good(root, "good", 1)
    write_good(root, "risky", 1)
    server = Server(root, work)
    loaded_s = server.wait_loaded()
    found = record(server, "1 start", "repository with good/1 and risky/1; server started", start,
                   load_s=round(loaded_s, 3), infer=[server.infer("good"), server.infer("risky")])
    verdict["start_serving"] = found["health"] == "SERVING" and found["server_ready"] is True
    return server, found


def step_corrupt_version(server: Server, root: Path, verdict: dict) -> dict:
    start = time.monotonic()
    corrupt(root, "risky", 2)
    answer = server.load("risky")
    found = record(server, "2 corrupt version", "risky/2/model.onnx written as garbage; RepositoryModelLoad('risky')",
                   start, answer, infer=server.infer("risky"))
    v2, v1 = entry(found["index"], "risky", "2"), entry(found["index"], "risky", "1")
    verdict["load_error_answered"] = answer[0] == "FAILED_PRECONDITION" and "version 2" in answer[1] \
        and "serving version 1" in answer[1]
    verdict["index_reason_shown"] = v2.get("state") == "UNAVAILABLE" and bool(v2.get("reason")) \
        and v1.get("state") == "READY"
    verdict["older_version_serves_on"] = found["infer"].get("model_version") == "1" \
        and found["health"] == "SERVING"
    return found


def step_config_error(server: Server, root: Path, verdict: dict) -> dict:
    start = time.monotonic()
    (root / "risky" / "config.pbtxt").write_text(BAD_CONFIG)
    answer = server.load("risky")
    found = record(server, "3 config error", f"risky/config.pbtxt written as {BAD_CONFIG!r}; "
                   "RepositoryModelLoad('risky')", start, answer, infer=server.infer("risky"))
    v1 = entry(found["index"], "risky", "1")
    verdict["config_error_answered"] = answer[0] == "FAILED_PRECONDITION" and "config.pbtxt" in answer[1]
    verdict["config_error_in_index"] = v1.get("state") == "READY" and "config.pbtxt" in v1.get("reason", "")
    verdict["serves_on_through_config_error"] = found["infer"].get("model_version") == "1"
    return found


def restart(server: Server, root: Path, work: Path, *extra: str) -> tuple[Server, int, float]:
    code = server.stop()
    fresh = Server(root, work, *extra)
    return fresh, code, fresh.wait_loaded()


def step_fallback(server: Server, root: Path, work: Path, verdict: dict) -> tuple[Server, dict]:
    start = time.monotonic()
    fix_config(root, "risky")
    server, exit_code, loaded_s = restart(server, root, work)
    lines = logged(server, "model version fell back", "risky")
    found = record(server, "4 fallback at restart", "config fixed, risky/2 still corrupt; SIGTERM and start again",
                   start, exit_code=exit_code, load_s=round(loaded_s, 3), fell_back_log=lines,
                   infer=server.infer("risky"))
    v2, v1 = entry(found["index"], "risky", "2"), entry(found["index"], "risky", "1")
    verdict["fallback_at_restart"] = len(lines) == 1 and lines[0].get("model_version") == "1" \
        and "version 2" in lines[0].get("reason", "") and found["infer"].get("model_version") == "1"
    verdict["fallback_index"] = v2.get("state") == "UNAVAILABLE" and bool(v2.get("reason")) \
        and v1.get("state") == "READY" and found["health"] == "SERVING"
    return server, found


def step_no_version(server: Server, root: Path, work: Path, verdict: dict) -> tuple[Server, list[dict]]:
    start = time.monotonic()
    corrupt(root, "risky", 1)
    server, exit_code, loaded_s = restart(server, root, work)
    broken = record(server, "5a every version broken", "risky/1 corrupt too (1 and 2 broken); restart", start,
                    exit_code=exit_code, load_s=round(loaded_s, 3), infer=[server.infer("good"),
                                                                           server.infer("risky")])
    verdict["health_not_serving_while_no_version_loads"] = broken["health"] == "NOT_SERVING" \
        and broken["server_ready"] is False
    verdict["good_answers_while_risky_broken"] = broken["infer"][0].get("code") == "OK"
    start = time.monotonic()
    write_good(root, "risky", 1)
    answer = server.load("risky")
    repaired = record(server, "5b repaired", "risky/1 written valid again (2 still corrupt); "
                      "RepositoryModelLoad('risky')", start, answer, infer=server.infer("risky"))
    verdict["health_back_after_repair"] = repaired["health"] == "SERVING" and repaired["server_ready"] is True \
        and repaired["infer"].get("model_version") == "1"
    return server, [broken, repaired]


def step_names(server: Server, verdict: dict) -> dict:
    start = time.monotonic()
    answers = [{"name": name, "code": code, "message": message[:REASON_CHARS]}
               for name in NOT_MODEL_NAMES for code, message in [server.load(name)]]
    found = record(server, "6 names not paths", f"RepositoryModelLoad of {list(NOT_MODEL_NAMES)}", start,
                   answers=answers)
    verdict["names_not_paths"] = all(a["code"] == "NOT_FOUND" for a in answers) and found["health"] == "SERVING"
    return found


def step_backoff(server: Server, root: Path, work: Path, window_s: float, verdict: dict) -> tuple[Server, dict]:
    """risky/2 stays corrupt and unchanged: with --poll-seconds 1 count the builds of it the
    log shows over the window, start-up included, against one per poll without backoff."""
    start = time.monotonic()
    server, exit_code, loaded_s = restart(server, root, work, "--poll-seconds", "1")
    time.sleep(window_s)
    tries = [e for e in logged(server, "model version failed to load", "risky") if e.get("model_version") == "2"]
    waits = [e.get("retry_after_s") for e in tries]
    without_backoff = int(window_s) + 1  # the start-up build and one per poll
    found = record(server, "7 poller backs off", f"restart with --poll-seconds 1, risky/2 unchanged and corrupt; "
                   f"watched the log {window_s} s", start, exit_code=exit_code, load_s=round(loaded_s, 3),
                   builds_of_broken_version=len(tries), retry_after_s=waits, build_times=[e.get("ts") for e in tries],
                   builds_without_backoff=without_backoff, infer=server.infer("risky"))
    # Retried unchanged (not given up on), but each wait longer than the one before.
    verdict["poller_backs_off"] = 2 <= len(tries) <= window_s / 2 and len(tries) < without_backoff \
        and all(b > a for a, b in pairwise(waits))
    return server, found


# ---------------------------------------------------------------------- the command

def run(work: Path, window_s: float) -> dict:
    root = work / "model_repo"
    verdict: dict[str, bool] = {}
    steps: list[dict] = []
    server = None
    try:
        server, found = step_start(root, work, verdict)
        steps.append(found)
        steps.append(step_corrupt_version(server, root, verdict))
        steps.append(step_config_error(server, root, verdict))
        server, found = step_fallback(server, root, work, verdict)
        steps.append(found)
        server, found_list = step_no_version(server, root, work, verdict)
        steps.extend(found_list)
        steps.append(step_names(server, verdict))
        server, found = step_backoff(server, root, work, window_s, verdict)
        steps.append(found)
        verdict["clean_exit"] = server.stop() == 0
        server = None
    except Exception as exc:  # noqa: BLE001 - a tool failure is reported, with what was seen until then
        verdict["tool_completed"] = False
        steps.append({"step": "error", "did": f"{type(exc).__name__}: {str(exc)[:4000]}"})
    finally:
        if server is not None:
            server.stop()
    return {"steps": steps, "verdict": verdict}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the JSON report")
    parser.add_argument("--window-seconds", type=float, default=8.0, help="how long step 7 watches the poller")
    parser.add_argument("--keep", action="store_true", help="keep the temporary repository and server logs")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="hanzo-model-loads-"))
    started = time.monotonic()
    try:
        report = run(work, args.window_seconds)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report = {"kind": "model-loads", "elapsed_s": round(time.monotonic() - started, 3), **report}
    if args.keep:
        report["workdir"] = str(work)
    write_report(args.out, report)
    ok = bool(report["verdict"]) and all(report["verdict"].values())
    print(json.dumps(report["verdict"], indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
