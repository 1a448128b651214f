"""`hanzo serve --workers N`: N server processes on one port (SO_REUSEPORT: the kernel spreads
connections over them), for the cores of a bigger machine. They share the Redis feature store
(tables, dedup, fraud network) and follow one catalogue feed, so they agree; each keeps its own
event log and snapshots under DATA_DIR/worker-<i>, and its own metrics port (the given one + i).
The parent forwards SIGTERM / SIGINT, and if one worker dies the others are stopped too."""
from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

from .config import ServerConfig

log = logging.getLogger(__name__)


def _without(argv: list[str], flag: str) -> list[str]:
    """argv without `flag VALUE` / `flag=VALUE`."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == flag:
            skip = True
            continue
        if arg.startswith(flag + "="):
            continue
        out.append(arg)
    return out


def worker_argv(argv: list[str], config: ServerConfig, index: int) -> list[str]:
    args = _without(_without(_without(argv, "--workers"), "--data-dir"), "--metrics-port")
    args += ["--reuse-port", "--no-demo-models", "--data-dir", str(Path(config.features.data_dir) / f"worker-{index}")]
    if config.metrics_port:
        args += ["--metrics-port", str(config.metrics_port + index)]
    return [sys.executable, "-m", "hanzo.server.commands", *args]


def run_workers(argv: list[str], config: ServerConfig, workers: int) -> int:
    if config.features.backend != "redis":
        raise ValueError("--workers needs the shared Redis feature store (--feature-backend redis): with one "
                         "embedded store per process the workers would not agree")
    if not config.port:
        raise ValueError("--workers needs a fixed --port for the workers to share")
    procs = [subprocess.Popen(worker_argv(argv, config, i)) for i in range(workers)]
    log.info(f"{workers} workers on port {config.port}", extra={"pids": [p.pid for p in procs]})
    stopping = False

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while any(p.poll() is None for p in procs):
        if not stopping and any(p.poll() is not None for p in procs):
            log.error("a worker exited; stopping the others")
            stop(None, None)
        time.sleep(0.2)
    codes = [p.returncode for p in procs]
    return 0 if stopping and all(c == 0 for c in codes) else 1
