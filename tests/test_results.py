"""Every figure in docs/results.md is a link to the report that holds it and the JSON path of
the value, `[3.31](../loadtest/reports/x.json "phases/1/server_ms/p99")` (" x100" after the path
for a percentage). The value in the report, rounded as printed, must be the figure; the report
must say where it was made (machine, date, command); a table cell holding a measured number
must hold its link."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results.md"
LINK = re.compile(r'\[([^\[\]]+)\]\((\.\./loadtest/reports/[^ )]+\.json) "([^"]+)"\)')
# Columns that hold what was asked or what was run, not what was measured.
UNMEASURED_COLUMNS = ("goal", "load", "rate", "policy", "system", "data", "task", "candidates", "configuration",
                      "server", "measurement", "data set, metric", "start", "what")


def figures(text: str) -> list[tuple[str, Path, str]]:
    return [(shown, (RESULTS.parent / report).resolve(), path) for shown, report, path in LINK.findall(text)]


def resolve(report: dict, path: str):
    value = report
    for part in path.split("/"):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def check(shown: str, report_path: Path, title: str) -> None:
    path, _, scale = title.partition(" ")
    report = json.loads(report_path.read_text())
    value = resolve(report, path) * (100 if scale == "x100" else 1)
    number = shown.replace(",", "").replace("%", "").replace("+", "").replace("−", "-")
    decimals = len(number.split(".")[1]) if "." in number else 0
    tolerance = 0.5 * 10 ** -decimals + 1e-9 * abs(value)
    assert abs(value - float(number)) <= tolerance, f"{shown} is {value} in {report_path.name} at {path}"


def test_every_figure_is_its_reports_value():
    found = figures(RESULTS.read_text())
    assert len(found) > 100
    for shown, report, path in found:
        assert report.exists(), f"{shown}: {report} is missing"
        check(shown, report, path)


def test_every_report_quoted_says_where_it_was_made():
    for report in {report for _, report, _ in figures(RESULTS.read_text())}:
        provenance = json.loads(report.read_text()).get("provenance")
        assert provenance and provenance.get("machine") and provenance.get("date") and provenance.get("command"), \
            f"{report.name} does not say where it was made"


def test_a_table_holds_no_figure_without_its_report():
    header: list[str] = []
    for line in RESULTS.read_text().splitlines():
        if not line.startswith("|"):
            header = []
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not header:
            header = [c.lower() for c in cells]
            continue
        if set(line) <= set("|-: "):
            continue
        for column, cell in zip(header[1:], cells[1:]):  # the first column names the row
            if any(column.startswith(word) for word in UNMEASURED_COLUMNS):
                continue
            bare = LINK.sub("", cell)
            assert not re.search(r"\d", bare), f"an unreported figure in {column!r}: {cell!r} ({line[:60]})"


def test_the_check_fails_on_an_edited_value_or_a_missing_report(tmp_path):
    report = tmp_path / "r.json"
    report.write_text(json.dumps({"a": {"b": [1.23456]}, "provenance": {}}))
    check("1.23", report, "a/b/0")
    check("123.5%", report, "a/b/0 x100")
    with pytest.raises(AssertionError):
        check("1.24", report, "a/b/0")
    report.unlink()
    with pytest.raises(FileNotFoundError):
        check("1.23", report, "a/b/0")
