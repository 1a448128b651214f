"""HTTP/REST beside gRPC for the same model in the same run: Triton's `simple` (two INT32
[1, 16] inputs, their sum and difference), called through the KServe V2 gRPC port and through
the HTTP port (binary tensor data, as tritonclient.http sends by default, and plain JSON), each
beside its floor (a do-nothing server on the same stack answering a canned copy of the real
answer).

    python -m hanzo.loadtest.http_vs_grpc --out loadtest/reports/http-vs-grpc.json
        [--workdir DIR] [--rate 500] [--seconds 20] [--concurrency 8] [--server-cpus 0 --client-cpus 1]

Per protocol: an open-loop Poisson load at `--rate` (p50 / p99 / p99.9 from each call's due
time) and a closed loop of `--concurrency` calls outstanding (the throughput)."""
from __future__ import annotations

import argparse
import contextlib
import json
from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np
import urllib.request
from tritonclient.grpc import service_pb2 as pb

from .floor import FloorServer
from .fuzz_server import start_demo, stop
from .http_load import HttpFloor, run_http_load
from .openloop import LoadResult, LoadSpec, parse_cpus, run_load
from .overload import settle
from .reports import write_report
from .runner import summarize
from .targets import KSERVE_INFER, free_port

PATH = "/v2/models/simple/infer"


def grpc_request() -> bytes:
    request = pb.ModelInferRequest(model_name="simple", id="load")
    for name, value in (("INPUT0", np.arange(16, dtype=np.int32)), ("INPUT1", np.ones(16, dtype=np.int32))):
        request.inputs.add(name=name, datatype="INT32", shape=[1, 16])
        request.raw_input_contents.append(value.tobytes())
    return request.SerializeToString()


def http_request(binary: bool) -> tuple[bytes, dict[str, str]]:
    """The body and headers tritonclient.http sends for the same call (binary tensor data, or
    JSON all through)."""
    inputs, raw = [], b""
    for name, value in (("INPUT0", np.arange(16, dtype=np.int32)), ("INPUT1", np.ones(16, dtype=np.int32))):
        entry = {"name": name, "shape": [1, 16], "datatype": "INT32"}
        if binary:
            entry["parameters"] = {"binary_data_size": 64}
            raw += value.tobytes()
        else:
            entry["data"] = value.tolist()
        inputs.append(entry)
    outputs = [{"name": n, "parameters": {"binary_data": binary}} for n in ("OUTPUT0", "OUTPUT1")]
    head = json.dumps({"id": "load", "inputs": inputs, "outputs": outputs}).encode()
    return head + raw, ({"Inference-Header-Content-Length": str(len(head))} if binary else {})


def _answer_http(url: str, body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    request = urllib.request.Request(f"http://{url}{PATH}", data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        keep = {k: v for k, v in answer.headers.items() if k in ("Content-Type", "Inference-Header-Content-Length")}
        return answer.read(), keep


def _row(result: LoadResult, spec: LoadSpec) -> dict:
    return {"mode": spec.mode, "offered_rps": spec.rate if spec.mode != "closed" else None,
            "concurrency": spec.concurrency if spec.mode == "closed" else None, "sent": result.sent,
            "ok": result.ok, "errors": result.errors, "throughput_rps": round(result.ok / max(result.elapsed_s, 1e-9), 1),
            "latency_ms": summarize(result.corrected), "late_sends": result.late_sends}


def _both(spec: LoadSpec, load) -> dict:
    return {"open": _row(load(spec), spec),
            "closed": _row(load(replace(spec, mode="closed")), replace(spec, mode="closed"))}


def comparison_arguments(module: str, doc: str, workdir: str, argv: list[str] | None) -> argparse.Namespace:
    """The options of a two-way comparison on Triton's `simple` model (this one, and
    loadtest/stream_vs_unary.py), its example models written into the workdir."""
    from hanzo.training.triton_example_models import build_triton_examples

    parser = argparse.ArgumentParser(prog=f"python -m hanzo.loadtest.{module}", description=doc.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, default=Path(workdir))
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--client-cpus", default="1")
    args = parser.parse_args(argv)
    if not (args.workdir / "model_repo" / "simple").is_dir():
        build_triton_examples(args.workdir / "model_repo")
    return args


def main(argv: list[str] | None = None) -> int:
    args = comparison_arguments("http_vs_grpc", __doc__, "/tmp/hanzo-http-vs-grpc", argv)
    server_cpus, client_cpus = parse_cpus(args.server_cpus), parse_cpus(args.client_cpus)
    http_port = free_port()
    served = start_demo(args.workdir, "serve-http-vs-grpc.log", ("--no-demo-models", "--http-port", str(http_port)),
                        server_cpus)
    http_url = f"127.0.0.1:{http_port}"
    spec = LoadSpec("", KSERVE_INFER, grpc_request(), rate=args.rate, concurrency=args.concurrency,
                    duration_s=args.seconds, warmup_s=2.0, timeout_s=2.0, cpus=client_cpus)
    phases: dict[str, dict] = {}
    try:
        settle(served.pid)
        with grpc.insecure_channel(served.url) as channel:
            canned = channel.unary_unary(KSERVE_INFER)(spec.request, timeout=30)
        with FloorServer([(KSERVE_INFER, "inference.ModelInferRequest", canned)]) as floor:
            phases["grpc_floor"] = _both(replace(spec, url=floor.url), run_load)
        phases["grpc"] = _both(replace(spec, url=served.url), run_load)
        for variant, binary in (("http_binary", True), ("http_json", False)):
            body, headers = http_request(binary)
            answer, answer_headers = _answer_http(http_url, body, headers)
            http_spec = replace(spec, method=PATH, request=body)
            with contextlib.ExitStack() as stack:
                floor = stack.enter_context(HttpFloor(answer, answer_headers, server_cpus))
                phases[f"{variant}_floor"] = _both(replace(http_spec, url=floor.url),
                                                   lambda s: run_http_load(s, headers))
            phases[variant] = _both(replace(http_spec, url=http_url), lambda s: run_http_load(s, headers))
    finally:
        stop(served.process)
    report = {"model": "simple (INT32 [1, 16] x 2 -> sum, difference)", "rate": args.rate, "seconds": args.seconds,
              "concurrency": args.concurrency, "server_cpus": args.server_cpus, "client_cpus": args.client_cpus,
              "phases": phases}
    write_report(args.out, report)
    for name, phase in phases.items():
        print(f"{name:18s} open p50 {phase['open']['latency_ms'].get('p50', 0):7.3f} ms  p99 "
              f"{phase['open']['latency_ms'].get('p99', 0):7.3f} ms  p99.9 {phase['open']['latency_ms'].get('p99.9', 0):7.3f}"
              f" ms   closed {phase['closed']['throughput_rps']:8.1f}/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
