"""`hanzo models` against a real server: status, promote and rollback through the Admin RPCs
while a client calls the model without pause (no call fails, the version each answer came
from is logged and switches once per step), each step in the audit log; and on disk, a
server polling the repository follows a pointer changed by the command."""
import json
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

from hanzo.server.models.production import pin_production, read_pointer
from test_repository import FEATURES, write_risk


def hanzo_models(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "hanzo.server.commands", "models", *args], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def infer_request() -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name="risk")
    tensor = request.inputs.add(name="features", datatype="FP32", shape=list(FEATURES.shape))
    request.raw_input_contents.append(FEATURES.tobytes())
    del tensor
    return request


class Caller(threading.Thread):
    """ModelInfer on the unnamed model, back to back: which version answered, and failures."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(url))
        self.versions: list[str] = []
        self.failures: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        request = infer_request()
        while not self.done.is_set():
            try:
                self.versions.append(self.stub.ModelInfer(request, timeout=10).model_version)
            except grpc.RpcError as exc:
                self.failures.append(f"{exc.code().name}: {exc.details()}")


def runs(versions: list[str]) -> list[str]:
    """The versions in the order they served, each run of answers once."""
    return [v for i, v in enumerate(versions) if i == 0 or versions[i - 1] != v]


def test_promote_and_rollback_under_load_through_the_admin_rpcs(tmp_path, server_process):
    repo = tmp_path / "model_repo"
    write_risk(repo, 1, seed=1)
    pin_production(repo / "risk", by="test")
    write_risk(repo, 2, seed=2)
    server = server_process(repo, "--no-demo-models")
    status = hanzo_models("status", "risk", "--url", server.url)["models"][0]
    assert (status["production_version"], status["candidate_version"], status["serving_version"]) == ("1", "2", "1")
    caller = Caller(server.url)
    caller.start()
    time.sleep(0.5)
    promoted = hanzo_models("promote", "risk", "--url", server.url)["models"][0]  # the candidate
    assert (promoted["serving_version"], promoted["previous_version"], promoted["history"]) == ("2", "1", ["1", "2"])
    time.sleep(0.5)
    rolled = hanzo_models("rollback", "risk", "--url", server.url)["models"][0]
    assert (rolled["serving_version"], rolled["last_action"]) == ("1", "rollback")
    time.sleep(0.5)
    caller.done.set()
    caller.join(15)
    assert caller.failures == []
    assert runs(caller.versions) == ["1", "2", "1"] and len(caller.versions) > 100
    audit = [json.loads(line) for line in (tmp_path / f"data-{server.port}" / "audit.jsonl").read_text().splitlines()]
    steps = [(r["what"].rsplit("/", 1)[-1], r["result"], r.get("model_name")) for r in audit
             if "Model" in r["what"] and "ModelVersions" not in r["what"]]
    assert steps == [("PromoteModel", "OK", "risk"), ("RollbackModel", "OK", "risk")]

    out = subprocess.run([sys.executable, "-m", "hanzo.server.commands", "models", "rollback", "risk", "--url",
                          server.url], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "FAILED_PRECONDITION" in out.stderr and "no earlier promoted version" in out.stderr
    out = subprocess.run([sys.executable, "-m", "hanzo.server.commands", "models", "promote", "nope", "--url",
                          server.url], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "NOT_FOUND" in out.stderr


def test_a_polling_server_follows_a_pointer_changed_on_disk(tmp_path, server_process):
    repo = tmp_path / "model_repo"
    write_risk(repo, 1, seed=1)
    pin_production(repo / "risk", by="test")
    server = server_process(repo, "--no-demo-models", "--poll-seconds", "0.2")
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.url))
    write_risk(repo, 2, seed=2)
    time.sleep(1.0)  # several polls: version 2 is loaded as the candidate, never served by itself
    assert stub.ModelInfer(infer_request(), timeout=10).model_version == "1"
    named = infer_request()
    named.model_version = "2"
    v2 = np.frombuffer(stub.ModelInfer(named, timeout=10).raw_output_contents[0], dtype=np.float32)
    status = hanzo_models("promote", "risk", "--model-repo", str(repo))["models"][0]
    assert status["production_version"] == 2 and status["changed_by"].startswith("cli (")
    assert read_pointer(repo / "risk").version == 2
    deadline = time.monotonic() + 30
    while stub.ModelInfer(infer_request(), timeout=10).model_version != "2":
        assert time.monotonic() < deadline, "the server did not follow the pointer"
        time.sleep(0.1)
    answer = stub.ModelInfer(infer_request(), timeout=10)
    assert np.allclose(np.frombuffer(answer.raw_output_contents[0], dtype=np.float32), v2)
