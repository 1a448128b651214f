import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import ServerProcess  # noqa: E402

from hanzo.training.demo_models import build_demo_repository  # noqa: E402


@pytest.fixture
def demo_repo(tmp_path: Path) -> Path:
    root = tmp_path / "model_repo"
    build_demo_repository(root)
    return root


@pytest.fixture
def server_process():
    started: list[ServerProcess] = []

    def start(model_repo: Path, *extra: str, wait: bool = True) -> ServerProcess:
        server = ServerProcess(model_repo, *extra)
        started.append(server)
        return server.wait_ready() if wait else server

    yield start
    for server in started:
        server.terminate()
