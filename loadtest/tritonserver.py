"""A real Triton Inference Server on this machine, to measure Hanzo against.

The PyPI wheel nvidia-pytriton carries tritonserver with only the Python backend (no ONNX
Runtime backend), so each Hanzo model gets a Python-backend twin: the same config.pbtxt
scheduling (max_batch_size, dynamic_batching, instances) and a model.py that runs the same
model.onnx with onnxruntime on the batch Triton forms. Facts this relies on:
../shared/notes/triton-on-cpu.md (the stub links Debian's libpython3.11, wants numpy<2).
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from .readiness import wait_until_ready

WHEEL = "nvidia-pytriton==0.7.0"
CACHE = Path(os.environ.get("HANZO_CACHE", Path.home() / ".cache" / "hanzo"))
SYSTEM_PYTHON = "/usr/bin/python3.11"

TWIN_MODEL_PY = '''\
"""Python-backend twin of a Hanzo ONNX model: Triton forms the batch, onnxruntime runs it."""
import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]

    def execute(self, requests):
        feeds = {name: [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for r in requests]
                 for name in self.inputs}
        sizes = [len(feeds[self.inputs[0]][i]) for i in range(len(requests))]
        batch = {name: np.concatenate(parts) if len(parts) > 1 else parts[0] for name, parts in feeds.items()}
        results = self.session.run(self.outputs, batch)
        responses, start = [], 0
        for size in sizes:
            tensors = [pb_utils.Tensor(name, value[start:start + size]) for name, value in zip(self.outputs, results)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses
'''


def write_twin(source_repo: Path, config: mc.ModelConfig, target_repo: Path) -> None:
    """A Python-backend twin of <source_repo>/<config.name> under <target_repo>. `config` is the
    completed config (as a Hanzo server's ModelConfig RPC answers it: inputs and outputs
    stated), since Triton's Python backend cannot read them from the model."""
    model = config.name
    if len(config.input) == 0 or len(config.output) == 0:
        raise ValueError(f"{model}: the twin needs a config with inputs and outputs")
    twin = mc.ModelConfig()
    twin.CopyFrom(config)
    twin.backend = "python"
    twin.platform = ""
    twin.default_model_filename = ""
    for group in twin.instance_group:
        group.kind = mc.ModelInstanceGroup.KIND_CPU
    if len(twin.instance_group) == 0:
        twin.instance_group.add(count=1, kind=mc.ModelInstanceGroup.KIND_CPU)
    out = Path(target_repo) / model
    if out.exists():
        shutil.rmtree(out)
    for version_dir in sorted(p for p in (Path(source_repo) / model).iterdir() if p.name.isdigit()):
        (out / version_dir.name).mkdir(parents=True)
        shutil.copy(version_dir / config.default_model_filename, out / version_dir.name / "model.onnx")
        (out / version_dir.name / "model.py").write_text(TWIN_MODEL_PY)
    (out / "config.pbtxt").write_text(text_format.MessageToString(twin))


def completed_config(repo: Path, model: str) -> mc.ModelConfig:
    """The model's config.pbtxt with its inputs and outputs stated (read from the model file),
    as a twin needs it; the remote-backend parameters left out (the twin runs the model)."""
    from hanzo.server.models.config import complete_io, load_config
    from hanzo.server.models.onnx_backend import OnnxRuntimeBackend
    from hanzo.server.models.triton_backend import NAME_PARAMETER, URL_PARAMETER

    model_dir = Path(repo) / model
    config = load_config(model_dir)
    versions = sorted(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())
    if not versions:
        raise ValueError(f"{model_dir}: no version folder")
    backend = OnnxRuntimeBackend(model_dir / str(versions[-1]) / config.default_model_filename, 1,
                                 ["CPUExecutionProvider"])
    try:
        complete_io(config, backend.inputs, backend.outputs)
    finally:
        backend.close()
    for key in (URL_PARAMETER, NAME_PARAMETER):
        if key in config.parameters:
            del config.parameters[key]
    return config


class TritonUnavailable(RuntimeError):
    """What this machine lacks to run the wheel's tritonserver (the wheel from PyPI, Debian's
    python3.11 with venv): the one reason a Triton comparison may be skipped."""


def _run(command: list[str], what: str) -> None:
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        detail = exc.stderr.strip().splitlines()[-1:] if isinstance(exc, subprocess.CalledProcessError) else [str(exc)]
        raise TritonUnavailable(f"{what} failed: {' '.join(detail)}") from None


def install(log=print) -> tuple[Path, Path]:
    """Unpack the wheel and build the server's venv once; returns (wheel dir, venv dir).
    Raises TritonUnavailable for what the machine lacks."""
    root = CACHE / "pytriton"
    server = root / "pytriton" / "tritonserver" / "bin" / "tritonserver"
    if not server.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        wheels = list(CACHE.glob("nvidia_pytriton-*.whl"))
        if not wheels:
            log(f"downloading {WHEEL} ...")
            _run([sys.executable, "-m", "pip", "download", "--no-deps", WHEEL, "-d", str(CACHE)],
                 f"pip download {WHEEL}")
            wheels = list(CACHE.glob("nvidia_pytriton-*.whl"))
        zipfile.ZipFile(wheels[0]).extractall(root)
    tritonserver = root / "pytriton" / "tritonserver"
    # The stub must match the venv's interpreter: Debian's python3.11.
    stub = tritonserver / "python_backend_stubs" / "3.11" / "triton_python_backend_stub"
    target_stub = tritonserver / "backends" / "python" / "triton_python_backend_stub"
    for path in (server, stub):
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    if not target_stub.exists():
        shutil.copy(stub, target_stub)
        target_stub.chmod(target_stub.stat().st_mode | stat.S_IEXEC)
    venv = CACHE / "triton-venv"
    if not (venv / "bin" / "python").exists():
        if not Path(SYSTEM_PYTHON).exists():
            raise TritonUnavailable(f"{SYSTEM_PYTHON} is missing: apt-get install python3.11 python3.11-venv")
        log("building the Triton Python-backend venv (numpy<2, onnxruntime) ...")
        _run([SYSTEM_PYTHON, "-m", "venv", str(venv)], f"{SYSTEM_PYTHON} -m venv")
        _run([str(venv / "bin" / "pip"), "install", "-q", "numpy<2", "onnxruntime"], "the venv's pip install")
    return root, venv


class TritonServer:
    """Context manager: tritonserver on loopback over a twin repository; `.url` once ready."""

    def __init__(self, source_repo: Path, configs: list[mc.ModelConfig], workdir: Path, log=print) -> None:
        self.source_repo, self.configs, self.workdir, self.log = Path(source_repo), configs, Path(workdir), log
        self.url = ""
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> "TritonServer":
        from .targets import free_port

        root, venv = install(self.log)
        repo = self.workdir / "triton_repo"
        for config in self.configs:
            write_twin(self.source_repo, config, repo)
        tritonserver = root / "pytriton" / "tritonserver"
        grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
        env = {**os.environ, "LD_LIBRARY_PATH": str(root / "nvidia_pytriton.libs"),
               "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}"}
        env.pop("PYTHONPATH", None)
        cmd = [str(tritonserver / "bin" / "tritonserver"), f"--model-repository={repo}",
               f"--backend-directory={tritonserver / 'backends'}", f"--cache-directory={tritonserver / 'caches'}",
               "--grpc-address=127.0.0.1", f"--grpc-port={grpc_port}", "--http-address=127.0.0.1",
               f"--http-port={http_port}", "--metrics-address=127.0.0.1", f"--metrics-port={metrics_port}",
               "--allow-gpu-metrics=false", f"--backend-config=python,shm-region-prefix-name=hanzo{grpc_port}"]
        self._logfile = open(self.workdir / "tritonserver.log", "w")
        self._proc = subprocess.Popen(cmd, env=env, stdout=self._logfile, stderr=subprocess.STDOUT)
        self.url = f"127.0.0.1:{grpc_port}"
        log_path = self.workdir / "tritonserver.log"
        wait_until_ready(self.url, self._proc, 120, lambda: f"see {log_path}", poll_s=0.25)
        return self

    def __exit__(self, *exc) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._logfile.close()
