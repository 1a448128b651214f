"""Waiting for a server process that speaks the KServe protocol (Hanzo, tritonserver) to say
it is ready."""
from __future__ import annotations

import subprocess
import time
from typing import Callable


def wait_until_ready(url: str, process: subprocess.Popen, timeout: float, describe: Callable[[], str],
                     poll_s: float = 0.1, tls_ca: str = "") -> None:
    """Return once ServerReady answers true; raise if the process exits first or `timeout`
    passes, with `describe()` (e.g. its log) in the message. `tls_ca`: over TLS, trusting it."""
    import tritonclient.grpc as tc

    client = tc.InferenceServerClient(url, ssl=bool(tls_ca), root_certificates=tls_ca or None)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}: {describe()}")
        try:
            if client.is_server_ready():
                return
        except Exception:  # not listening yet
            pass
        time.sleep(poll_s)
    raise TimeoutError(f"the server was not ready in {timeout} s: {describe()}")
