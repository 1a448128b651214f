"""Safe by default: with no TLS or credentials the server listens on loopback only, says so, and
refuses any other address in one line unless --insecure-remote asks for it out loud."""
from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import ServerProcess

from hanzo.loadtest.targets import free_port
from hanzo.server.app.config import ServerConfig
from hanzo.server.app.exposure import is_loopback

pytestmark = pytest.mark.slow


def serve(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    (tmp_path / "repo").mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "hanzo.server.commands", "serve", "--no-demo-models", "--model-repo",
                           str(tmp_path / "repo"), "--data-dir", str(tmp_path / "data"), "--port",
                           str(free_port()), *extra], capture_output=True, text=True, timeout=120)


def test_the_default_address_is_loopback():
    assert ServerConfig().host == "127.0.0.1" and is_loopback(ServerConfig().host)
    assert is_loopback("::1") and is_loopback("[::1]") and is_loopback("localhost") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("10.1.2.3")


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_another_address_is_refused_in_one_line_naming_the_way_out(tmp_path, host):
    done = serve(tmp_path, "--host", host)
    assert done.returncode == 2
    assert f"refusing to listen on {host}" in done.stderr and "--insecure-remote" in done.stderr
    assert "Traceback" not in done.stderr


def test_insecure_remote_listens_beyond_loopback_and_says_so(tmp_path):
    (tmp_path / "repo").mkdir()
    server = ServerProcess(tmp_path / "repo", "--no-demo-models", "--host", "0.0.0.0", "--insecure-remote")
    try:
        server.wait_ready()
        assert "without TLS and API keys (insecure_remote)" in server.log()
    finally:
        server.terminate()


def test_the_default_says_it_listens_on_loopback_only(tmp_path):
    (tmp_path / "repo").mkdir()
    server = ServerProcess(tmp_path / "repo", "--no-demo-models").wait_ready()
    try:
        assert "listening on loopback only" in server.log()
    finally:
        server.terminate()
