"""Hanzo against Feast, serving the same values for the same entities (a benchmark command,
not a test: Feast lives in its own venv).

    python -m hanzo.loadtest.feast_compare --url 127.0.0.1:50051 --events events.jsonl.gz \
        --feast-python /path/to/feast-venv/bin/python

Reads every scalar user feature of the `--users` most active users of the events file (the one
the server ingested) from a running Hanzo server (GetFeatures),
loads exactly those values into a Feast feature view on a fresh redis-server, checks Feast
serves them back, then times sequential calls for 1 user and for 100 users: Feast's
get_online_features (its Python SDK against Redis) beside Hanzo's GetFeatures over gRPC.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

from hanzo.v1 import commerce_pb2, commerce_pb2_grpc

from .reports import write_report
from .targets import free_port


def hanzo_values(stub, ids: list[str]) -> tuple[list[str], np.ndarray]:
    scalar = [n for n in _user_features() if n]
    response = stub.GetFeatures(commerce_pb2.FeaturesRequest(entity="user", entity_ids=ids, feature_names=scalar),
                                timeout=30)
    values = np.frombuffer(response.values, np.float32).reshape(len(ids), len(response.columns))
    columns = [c.replace("[", "_").replace("]", "") for c in response.columns]
    return columns, values


def _user_features() -> list[str]:
    from hanzo.server.features.definitions import FEATURES

    return [f.name for f in FEATURES if f.entity == "user" and f.aggregation != "sequence"]


def time_hanzo(stub, ids: list[str], calls: int) -> dict:
    request = commerce_pb2.FeaturesRequest(entity="user", entity_ids=ids, feature_names=_user_features())
    for _ in range(20):
        stub.GetFeatures(request, timeout=10)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        stub.GetFeatures(request, timeout=10)
        times.append((time.perf_counter() - start) * 1000)
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99)), "calls": calls}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="127.0.0.1:50051")
    parser.add_argument("--feast-python", required=True, help="the interpreter of a venv with feast[redis]")
    parser.add_argument("--events", type=Path, required=True, help="the events the server ingested")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=500)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    stub = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(args.url))
    ids = most_active_users(args.events, args.users)
    columns, values = hanzo_values(stub, ids)
    with tempfile.TemporaryDirectory(prefix="hanzo-feast-") as tmp:
        workdir = Path(tmp)
        (workdir / "values.json").write_text(json.dumps({"entity_ids": ids, "columns": columns,
                                                         "values": values.tolist()}))
        port = free_port()
        redis = subprocess.Popen([shutil.which("redis-server"), "--port", str(port), "--save", "", "--appendonly",
                                  "no"], stdout=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            subprocess.run([args.feast_python, str(Path(__file__).with_name("feast_side.py")), str(workdir),
                            f"127.0.0.1:{port}", str(args.repeats)], check=True)
            feast = json.loads((workdir / "feast_result.json").read_text())
        finally:
            redis.terminate()
    result = {"users": len(ids), "columns": len(columns), "feast": feast,
              "hanzo": {"1": time_hanzo(stub, ids[:1], args.repeats),
                        "100": time_hanzo(stub, ids[:100], max(args.repeats // 5, 20))}}
    for label in ("1", "100"):
        result[f"ratio_p99_{label}"] = feast[label]["p99_ms"] / result["hanzo"][label]["p99_ms"]
        result[f"ratio_p50_{label}"] = feast[label]["p50_ms"] / result["hanzo"][label]["p50_ms"]
    print(json.dumps(result, indent=1))
    if args.out:
        write_report(args.out, result)
    return 0 if feast["same_values"] else 1


def most_active_users(events: Path, n: int) -> list[str]:
    from collections import Counter

    from hanzo.server.features.formats import iter_records

    counts = Counter(record["user_id"] for _, record in iter_records(events)
                     if isinstance(record, dict) and record.get("user_id"))
    return [user for user, _ in counts.most_common(n)]


if __name__ == "__main__":
    raise SystemExit(main())
