"""Throughput with h2load (Debian's nghttp2-client): a C HTTP/2 client driving gRPC unary
calls from a prebuilt body, so the client is never what limits the figure. h2load sees only
HTTP status; gRPC errors live in trailers, so successes are confirmed from server counters."""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass
class H2loadResult:
    requests_per_s: float
    done: int
    http_failed: int
    mean_ms: float
    max_ms: float
    output: str


def grpc_frame(request: bytes) -> bytes:
    """A gRPC length-prefixed message: no compression, 4-byte big-endian length."""
    return b"\x00" + len(request).to_bytes(4, "big") + request


def available() -> bool:
    return shutil.which("h2load") is not None


_TO_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(value: str) -> float:
    """h2load's '450us', '1.23ms', '1.2s' in milliseconds."""
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()
    return float(number) * _TO_MS[unit]


def run_h2load(url: str, method: str, request: bytes, clients: int = 4, streams: int = 8, duration_s: float = 10,
               warmup_s: float = 2, threads: int = 1) -> H2loadResult:
    if not available():
        raise RuntimeError("h2load is not installed: apt-get install nghttp2-client")
    with tempfile.NamedTemporaryFile(suffix=".grpc") as body:
        Path(body.name).write_bytes(grpc_frame(request))
        cmd = ["h2load", f"http://{url}{method}", "-c", str(clients), "-m", str(streams), "-t", str(threads),
               "-D", f"{round(duration_s * 1000)}ms", "--warm-up-time", f"{round(warmup_s * 1000)}ms",
               "-H", "content-type: application/grpc", "-H", "te: trailers", "-d", body.name]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + warmup_s + 60).stdout
    rate = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    counts = re.search(r"requests: \d+ total, \d+ started, (\d+) done, \d+ succeeded, (\d+) failed", out)
    timing = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if not (rate and counts and timing):
        raise RuntimeError(f"could not read h2load's output:\n{out}")
    return H2loadResult(float(rate.group(1)), int(counts.group(1)), int(counts.group(2)), _ms(timing.group(3)),
                        _ms(timing.group(2)), out)
