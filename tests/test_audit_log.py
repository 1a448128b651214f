"""The audit log's file: lines fsynced in order, waiting for a data directory a first start has
not made yet, a torn last line skipped on reading, an overflow counted rather than held."""
from __future__ import annotations

import json
import time

from hanzo.server.api import audit
from hanzo.server.api.audit import AuditLog, read


def test_lines_wait_for_the_data_directory_then_land_in_order(tmp_path):
    log = AuditLog(tmp_path / "data" / "audit.jsonl", wait_for_directory=True)
    log.record("ops", "/inference.GRPCInferenceService/RepositoryModelLoad", "OK", model_name="risk")
    time.sleep(0.8)
    assert not (tmp_path / "data").exists()  # never made by the audit log while it may wait
    (tmp_path / "data").mkdir()
    log.record("ops", "/inference.GRPCInferenceService/RepositoryModelUnload", "NOT_FOUND", model_name="x" * 500)
    log.close()
    records = list(read(tmp_path / "data" / "audit.jsonl"))
    assert [r["what"].rsplit("/", 1)[1] for r in records] == ["RepositoryModelLoad", "RepositoryModelUnload"]
    assert len(records[1]["model_name"]) == audit.FIELD_CHARS and records[0]["time"].endswith("Z")
    assert (tmp_path / "data" / "audit.jsonl").stat().st_mode & 0o777 == 0o600


def test_a_server_that_stops_before_its_directory_exists_logs_its_lines_and_makes_no_directory(tmp_path, caplog):
    log = AuditLog(tmp_path / "never" / "audit.jsonl", wait_for_directory=True)
    log.record("anonymous from ipv4:127.0.0.1:1", "/hanzo.v1.Admin/GetLatency", "UNAUTHENTICATED")
    with caplog.at_level("WARNING", logger="hanzo.server.api.audit"):
        log.close()
    assert not (tmp_path / "never").exists()
    assert [r.audit["result"] for r in caplog.records if hasattr(r, "audit")] == ["UNAUTHENTICATED"]


def test_a_torn_last_line_is_skipped(tmp_path):
    path = tmp_path / "audit.jsonl"
    path.write_text(json.dumps({"time": "t", "who": "a", "what": "b", "result": "OK"}) + "\n{\"time\": \"t2\", \"wh")
    assert [r["who"] for r in read(path)] == ["a"]


def test_an_overflow_is_counted_in_the_next_line(tmp_path, monkeypatch):
    monkeypatch.setattr(audit, "QUEUE_LIMIT", 3)
    log = AuditLog(tmp_path / "d" / "audit.jsonl", wait_for_directory=True)  # nothing written: all pending
    for n in range(10):
        log.record("ops", f"call {n}", "OK")
    time.sleep(0.3)
    (tmp_path / "d").mkdir()
    log.close()
    records = list(read(tmp_path / "d" / "audit.jsonl"))
    overflow = [r for r in records if r["what"] == "audit queue overflow"]
    kept = [r for r in records if r["what"].startswith("call ")]
    assert overflow and overflow[0]["lines"] + len(kept) == 10 and kept[0]["what"] == "call 0"


def test_refused_attempts_are_recorded_at_a_bounded_rate_and_the_rest_counted():
    from hanzo.server.api.access import REFUSALS_PER_S, Access, AccessConfig

    access = Access(AccessConfig(), None, None)
    outcomes = [access._refusal_unrecorded() for _ in range(5 * REFUSALS_PER_S)]
    recorded = [o for o in outcomes if o is not None]
    assert len(recorded) <= REFUSALS_PER_S + 1 and access.refusals_unrecorded >= 4 * REFUSALS_PER_S - 1
    time.sleep(0.2)  # the budget refills: the next record says how many went unrecorded
    assert access._refusal_unrecorded() == len(outcomes) - len(recorded)
