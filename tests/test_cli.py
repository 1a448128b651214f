"""The command line as a user meets it: every flag explained with its default, a version, and a
mistake answered in one line that names the flag or the file."""
from __future__ import annotations

import argparse
import socket
import subprocess
import sys

import pytest

from hanzo.server.commands import build_parser
from hanzo.server.commands.common import HelpFormatter

HANZO = [sys.executable, "-m", "hanzo.server.commands"]


def _hanzo(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*HANZO, *args], capture_output=True, text=True, timeout=timeout)


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, path + (name,))


def test_every_flag_has_help_and_shows_its_default():
    parsers = list(_parsers(build_parser()))
    assert len(parsers) > 15
    for path, parser in parsers:
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            where = f"hanzo {' '.join(path)} {'/'.join(action.option_strings) or action.dest}"
            assert action.help, f"{where} has no help"
            if action.option_strings and action.default not in (None, False):
                shown = HelpFormatter("hanzo")._get_help_string(action) % vars(action)
                assert "default" in shown, f"{where}: its default {action.default!r} is not shown"


def test_each_commands_help_renders_and_version_answers():
    for path, _ in _parsers(build_parser()):
        run = _hanzo(*path, "--help")
        assert run.returncode == 0, (path, run.stderr)
    version = _hanzo("--version")
    assert version.returncode == 0 and version.stdout.startswith("hanzo ")


def _one_line_error(run: subprocess.CompletedProcess, *words: str) -> str:
    assert run.returncode == 2, (run.returncode, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_mistakes_are_one_line_naming_the_flag_or_file(tmp_path):
    _one_line_error(_hanzo("loadtest", "--rpc", "Recommend", "--request", "{bad"), "--request", "not JSON")
    _one_line_error(_hanzo("loadtest", "--rpc", "Recommend", "--request", '{"usr": 1}'), "--request", "usr")
    _one_line_error(_hanzo("serve", "--config", str(tmp_path / "missing.toml")), "--config", "missing.toml")
    toml = tmp_path / "hanzo.toml"
    toml.write_text("[server]\nprot = 5\n")
    _one_line_error(_hanzo("serve", "--config", str(toml)), str(toml), "prot", "did you mean 'port'")
    toml.write_text("[features]\nfsync = 1\n")
    _one_line_error(_hanzo("serve", "--config", str(toml)), "[features] fsync must be str")
    toml.write_text("[serverr]\n")
    _one_line_error(_hanzo("serve", "--config", str(toml)), "unknown table [serverr]")
    _one_line_error(_hanzo("train", "recommend", "--events", str(tmp_path / "nope.jsonl")), "--events", "nope.jsonl")
    _one_line_error(_hanzo("plan-inventory", "--sales", str(toml), "--out", str(tmp_path / "o.csv"),
                           "--service-level", "2"), "--service-level")


@pytest.mark.slow
def test_a_taken_port_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = _hanzo("serve", "--host", "127.0.0.1", "--port", str(port), "--no-demo-models", "--model-repo",
                     str(tmp_path / "repo"), "--data-dir", str(tmp_path / "data"), "--log-level", "ERROR")
    _one_line_error(run, f"127.0.0.1:{port}", "cannot listen")


@pytest.mark.slow
def test_a_second_server_or_a_bulk_ingest_on_a_servers_data_is_refused(tmp_path, demo_repo, server_process):
    data = tmp_path / "data"
    server_process(demo_repo, "--data-dir", str(data))
    second = _hanzo("serve", "--host", "127.0.0.1", "--port", "0", "--model-repo", str(demo_repo), "--data-dir",
                    str(data), "--log-level", "ERROR")
    _one_line_error(second, str(data), "in use by another hanzo process")
    events = tmp_path / "events.jsonl"
    events.write_text('{"event_id": "e1", "event_type": "page_view", "timestamp": "2026-01-01T00:00:00Z", '
                      '"session_id": "s1", "payload": {}}\n')
    _one_line_error(_hanzo("ingest", str(events), "--data-dir", str(data)), "in use by another hanzo process")


def test_a_server_that_cannot_be_reached_is_one_line(tmp_path):
    events = tmp_path / "events.jsonl"
    events.write_text('{"event_id": "e1", "event_type": "page_view", "timestamp": "2026-01-01T00:00:00Z", '
                      '"session_id": "s1", "payload": {}}\n')
    _one_line_error(_hanzo("ingest", str(events), "--url", "127.0.0.1:1"), "--url 127.0.0.1:1", "UNAVAILABLE")


def test_a_reader_that_stops_early_is_no_error(tmp_path):
    run = subprocess.run(f"{sys.executable} -m hanzo.server.commands demo-models --model-repo {tmp_path / 'r'} "
                         f"| head -c 0", shell=True, capture_output=True, text=True, timeout=120)
    assert run.stderr == "", run.stderr
