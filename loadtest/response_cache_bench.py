"""The response cache under load: one model (a tanh chain, width 256, 40 layers, about a
millisecond a batch on this machine's CPU) served twice from one repository, once with
`response_cache { enable: true }` and once without, each loaded open loop (Poisson) at
`--rate` with requests drawn from `--distinct` different inputs by a Zipf law (a few popular
products asked for again and again, a long tail asked for rarely), the same draw for both.

    python -m hanzo.loadtest.response_cache_bench --out loadtest/reports/response-cache.json
        [--workdir DIR] [--rate 1000] [--seconds 20] [--distinct 2000] [--zipf 1.1]
        [--server-cpus 0 --client-cpus 1]

Reported per model: the client's p50 / p99 / p99.9 from each call's due time, the errors, and
the server's own count of cache hits and misses and of model executions over the load (its
warm-up included)."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb

from .fuzz_server import start_demo, stop
from .openloop import LoadSpec, parse_cpus, run_load
from .overload import settle
from .reports import write_report
from .runner import summarize
from .tanh_chain import tanh_chain
from .targets import KSERVE_INFER

WIDTH, LAYERS = 256, 40


def build_repository(root: Path) -> None:
    from hanzo.training.repository_writer import write_version

    for name, cached in (("chain", False), ("chain_cached", True)):
        config = mc.ModelConfig(name=name, backend="onnxruntime", max_batch_size=16)
        config.dynamic_batching.max_queue_delay_microseconds = 0
        config.response_cache.enable = cached
        write_version(root, config, 1, tanh_chain(WIDTH, LAYERS, seed=0, name=name))


def bodies(model: str, distinct: int, count: int, zipf: float, seed: int) -> tuple[bytes, ...]:
    """`count` requests for `model`, each one of `distinct` inputs drawn by a Zipf law."""
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, distinct + 1, dtype=float)
    weights = ranks ** -zipf
    picks = rng.choice(distinct, size=count, p=weights / weights.sum())
    inputs = np.random.default_rng(seed + 1).standard_normal((distinct, WIDTH)).astype(np.float32)
    out = []
    for i in picks:
        request = pb.ModelInferRequest(model_name=model)
        request.inputs.add(name="x", datatype="FP32", shape=[1, WIDTH])
        request.raw_input_contents.append(inputs[i].tobytes())
        out.append(request.SerializeToString())
    return tuple(out)


def _counts(url: str, model: str) -> dict[str, int]:
    stats = grpcclient.InferenceServerClient(url).get_inference_statistics(model).model_stats[0]
    return {"hits": stats.inference_stats.cache_hit.count, "misses": stats.inference_stats.cache_miss.count,
            "executions": stats.execution_count, "successes": stats.inference_stats.success.count}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hanzo.loadtest.response_cache_bench",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hanzo-response-cache"))
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--distinct", type=int, default=2000)
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--cache-mib", type=int, default=64)
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--client-cpus", default="1")
    args = parser.parse_args(argv)
    if not (args.workdir / "model_repo" / "chain_cached").is_dir():
        build_repository(args.workdir / "model_repo")
    served = start_demo(args.workdir, "serve-response-cache.log",
                        ("--no-demo-models", "--response-cache-bytes", str(args.cache_mib << 20)),
                        parse_cpus(args.server_cpus))
    count = int(args.rate * (args.seconds + 4)) + 1000  # enough that no body repeats by cycling
    runs = {}
    try:
        settle(served.pid)
        for model in ("chain", "chain_cached"):
            requests = bodies(model, args.distinct, count, args.zipf, seed=7)
            spec = LoadSpec(served.url, KSERVE_INFER, requests[0], requests=requests, rate=args.rate,
                            duration_s=args.seconds, warmup_s=2.0, timeout_s=2.0, cpus=parse_cpus(args.client_cpus))
            before = _counts(served.url, model)
            result = run_load(spec)
            after = _counts(served.url, model)
            served_counts = {k: after[k] - before[k] for k in after}
            looked = served_counts["hits"] + served_counts["misses"]
            runs[model] = {"sent": result.sent, "ok": result.ok, "errors": result.errors,
                           "latency_ms": summarize(result.corrected), "server": served_counts,
                           "hit_rate": round(served_counts["hits"] / looked, 4) if looked else None,
                           "late_sends": result.late_sends}
            print(f"{model:14s} p50 {runs[model]['latency_ms'].get('p50', 0):7.3f} ms  p99 "
                  f"{runs[model]['latency_ms'].get('p99', 0):7.3f} ms  hit rate {runs[model]['hit_rate']}  "
                  f"executions {served_counts['executions']}  errors {result.errors}")
    finally:
        stop(served.process)
    write_report(args.out, {"model": f"tanh chain, width {WIDTH}, {LAYERS} layers, max_batch_size 16",
                            "rate": args.rate, "seconds": args.seconds, "distinct": args.distinct, "zipf": args.zipf,
                            "cache_mib": args.cache_mib, "server_cpus": args.server_cpus,
                            "client_cpus": args.client_cpus, "runs": runs})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
