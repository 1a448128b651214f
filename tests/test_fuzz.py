"""Every RPC the server registers, fuzzed on a fixed budget against a real `hanzo serve` on
the demo world: no answer may be UNKNOWN or INTERNAL (hostile input is the caller's mistake,
INVALID_ARGUMENT naming the field), none may come after its deadline, and the server still
answers at the end. The full-size run and its report: python -m hanzo.loadtest.fuzz."""
from __future__ import annotations

import pytest
from hanzo.loadtest.fuzz import Settings, fuzz, summary
from hanzo.loadtest.fuzz_server import Served, demo_manifest

pytestmark = pytest.mark.slow

# Sized for CI's 2 cores: every method gets a few dozen calls per seed, in seconds. Strings
# stay below 256 KiB so the budget goes to variety, not to copying bytes.
SETTINGS = Settings(calls=1500, seeds=(11, 12), concurrency=4, deadline_s=2.0, slack_s=0.5,
                    max_string_bytes=256 << 10, passes=1, time_limit_s=120.0)


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    """`hanzo serve` on an empty repository: the demo world, every surface and model."""
    from helpers import ServerProcess

    root = tmp_path_factory.mktemp("fuzz")
    server = ServerProcess(root / "model_repo").wait_ready()
    yield Served(server.url, server.proc.pid, server.log_path, None, demo_manifest(root / "demo_world"),
                 server.proc), root / "demo_world"
    server.terminate()


def test_no_rpc_answers_unknown_internal_or_late_under_fuzzing(demo_server):
    served, world = demo_server
    report = fuzz(served, SETTINGS, world)
    result = report["verdict"]
    assert report["methods_from"] == "reflection", report["methods_from"]
    assert sum(p["fuzzer_errors"] for p in report["passes"]) == 0, summary(report)
    assert sum(p["skipped_by_time_limit"] for p in report["passes"]) == 0, "the budget did not fit the time limit"
    assert (result["unknown"], result["internal"], result["late"], result["deadline_exceeded"]) == (0, 0, 0, 0), \
        "\n" + summary(report)
    assert result["alive"], report["alive"]
