"""`hanzo loadtest`: arguments and the printed / JSON report."""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from .reports import write_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="127.0.0.1:50051", help="server address (default 127.0.0.1:50051)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="ModelInfer on this model (random inputs from its metadata)")
    what.add_argument("--ingest", type=Path, metavar="EVENTS",
                      help="IngestEvents throughput: the file's distinct events in batches of --batch")
    what.add_argument("--rpc", help="a Commerce RPC: Recommend, Search, ScoreFraud, ...")
    what.add_argument("--scenario", type=Path,
                      help="a JSON scenario mixing RPCs and models by weight (see loadtest/scenarios/)")
    parser.add_argument("--request", help="the Commerce request as JSON (default: an example with the demo's ids)")
    parser.add_argument("--request-file", type=Path,
                        help="JSON lines of Commerce requests, sent in turn (e.g. many user ids)")
    parser.add_argument("--batch", type=int, help="rows per ModelInfer request (default 1); events per "
                                                 "IngestEvents batch (default 500)")
    parser.add_argument("--mode", choices=["poisson", "constant", "closed", "h2load"], default="poisson",
                        help="open loop (poisson, constant), closed loop, or h2load throughput")
    parser.add_argument("--rate", type=float, default=500.0, help="open loop: requests/s in all (default 500)")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="closed loop: calls outstanding; --ingest: batches in flight (default 1)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring (default 2)")
    parser.add_argument("--timeout", type=float, default=5.0, help="per-call deadline in seconds (default 5)")
    parser.add_argument("--processes", type=int, default=1, help="client processes (default 1)")
    parser.add_argument("--client-cpus", metavar="CPUS",
                        help="run the load generator on these CPUs only (as taskset -c takes them: 1, 1,3, 2-3); "
                             "start the server on others (taskset -c 0 hanzo serve ...) so they do not share a core")
    parser.add_argument("--clients", type=int, default=4, help="h2load: connections (default 4)")
    parser.add_argument("--streams", type=int, default=8, help="h2load: streams per connection (default 8)")
    parser.add_argument("--compare-triton", action="store_true",
                        help="also load a real tritonserver serving Python-backend twins of --model-repo")
    parser.add_argument("--model-repo", type=Path, default=Path("model_repo"),
                        help="the server's repository: for --compare-triton, and the demo world beside it whose ids "
                             "the example requests use")
    parser.add_argument("--seed", type=int, default=0, help="seed of the arrivals and the random model inputs")
    parser.add_argument("--no-floor", action="store_true", help="skip the no-op floor server")
    parser.add_argument("--rates", help="open loop: a sweep of rates, comma-separated (e.g. 100,200,500,1000), "
                                       "each a full run; the plots then show throughput against p99")
    parser.add_argument("--metrics-url", help="the server's Prometheus endpoint(s), comma-separated (one per "
                                             "worker): server-side latency from its histograms as well")
    parser.add_argument("--plots", type=Path, metavar="DIR",
                        help="write PNG plots and a self-contained report.html into DIR")
    parser.add_argument("--tls-ca", default="", help="speak TLS to the server, trusting this CA certificate (PEM)")
    parser.add_argument("--api-key", default=os.environ.get("HANZO_API_KEY", ""),
                        help="API key sent with every call (default: $HANZO_API_KEY)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--out", type=Path, help="write the JSON report here")


def run(args: argparse.Namespace) -> int:
    import grpc

    if args.ingest:
        return _ingest(args)

    from . import targets
    from .openloop import LoadSpec, parse_cpus
    from .runner import format_report, measure

    for flag, path in (("--scenario", args.scenario), ("--request-file", args.request_file)):
        if path is not None and not Path(path).is_file():
            print(f"hanzo loadtest: {flag} {path}: no such file", file=sys.stderr)
            return 2
    try:
        if args.scenario:
            target = targets.scenario_file(args.scenario, args.url, args.seed)
            method, request = target.parts[0][0].method, target.parts[0][0].request
        else:
            target = (targets.model_infer(args.url, args.model, args.batch or 1, args.seed) if args.model
                      else targets.commerce(args.rpc, args.request, args.request_file,
                                            args.model_repo.resolve().parent / "demo_world" / "demo.json"))
            method, request = target.method, target.request
        rates = [float(r) for r in args.rates.split(",") if r.strip()] if args.rates else [args.rate]
        if len(rates) > 1 and args.mode not in ("poisson", "constant"):
            raise ValueError("--rates sweeps an open-loop load (--mode poisson or constant)")
        spec = LoadSpec(args.url, method, request, mode=args.mode, rate=rates[0],
                        concurrency=args.concurrency, duration_s=args.duration, warmup_s=args.warmup,
                        timeout_s=args.timeout, processes=args.processes, seed=args.seed,
                        h2_clients=args.clients, h2_streams=args.streams, cpus=parse_cpus(args.client_cpus),
                        progress=not args.no_progress and sys.stderr.isatty(), tls_ca=args.tls_ca,
                        api_key=args.api_key)
        log = lambda m: print(m, file=sys.stderr)  # noqa: E731
        with contextlib.ExitStack() as stack:
            peers = {}
            if args.compare_triton:
                if not args.model:
                    raise ValueError("--compare-triton needs --model")
                import tritonclient.grpc as tc

                from .tritonserver import TritonServer

                config = tc.InferenceServerClient(args.url).get_model_config(args.model).config
                workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hanzo-triton-")))
                peers["triton"] = stack.enter_context(TritonServer(args.model_repo, [config], workdir, log)).url
            reports = []
            for rate in rates:
                metrics = [u.strip() for u in args.metrics_url.split(",") if u.strip()] if args.metrics_url else None
                reports.append(measure(replace(spec, rate=rate), target, with_floor=not args.no_floor, peers=peers,
                                       log=log, metrics_urls=metrics))
                print(format_report(reports[-1]))
    except grpc.RpcError as exc:
        print(f"hanzo loadtest: the server refused the request: {exc.code().name}: {exc.details()}",
              file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"hanzo loadtest: {exc}", file=sys.stderr)
        return 2
    dicts = [r.as_dict() for r in reports]
    if args.out:
        write_report(args.out, dicts[0] if len(dicts) == 1 else {"sweep": dicts})
    if args.plots:
        from .plots import write

        for path in write(dicts, args.plots):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def _ingest(args: argparse.Namespace) -> int:
    import grpc

    from . import ingest_bench
    from .runner import _server_latency, summarize

    from hdrh.histogram import HdrHistogram

    batch = args.batch or 500
    print(f"preparing batches of {batch} from {args.ingest} ...", file=sys.stderr)
    requests = ingest_bench.prepare(args.ingest, batch)
    try:
        _server_latency(args.url, ingest_bench.METHOD, reset=True)
        report = ingest_bench.run(args.url, requests, args.concurrency)
        own = _server_latency(args.url, ingest_bench.METHOD, reset=False)
    except grpc.RpcError as exc:
        print(f"hanzo loadtest: the server refused the batch: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 2
    server_ms = summarize(HdrHistogram.decode(own.hdr_histogram)) if own is not None and own.count else {}
    print(f"IngestEvents: {report.events} events in {report.batches} batches of {batch}, {args.concurrency} in "
          f"flight: {report.events_per_s:,.0f} events/s over {report.seconds:.2f} s; accepted {report.accepted}, "
          f"duplicates {report.duplicates}, rejected {report.rejected}")
    a = report.ack_ms
    print(f"ack latency ms: p50 {a.get('p50', 0):.2f} p99 {a.get('p99', 0):.2f} max {a.get('max', 0):.2f}"
          + (f" | server p50 {server_ms['p50']:.2f} p99 {server_ms['p99']:.2f}" if server_ms else ""))
    if args.out:
        write_report(args.out, {**report.__dict__, "events_per_s": report.events_per_s, "server_ms": server_ms,
                                "batch": batch, "concurrency": args.concurrency})
    return 0
