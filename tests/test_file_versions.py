"""A model kept as one file per version folder (pricing's demand model) under a production
pointer: the newest serves without a pointer; with one, production serves, the candidate and
the previous production stay loaded, a version that does not load is skipped and reported, a
damaged pointer leaves what served serving, and promotion and rollback move it as they move a
repository model (the same Promotions, the same pointer file)."""
from __future__ import annotations

import json
import os

import pytest

from hanzo.server.models.errors import FailedPrecondition, NotFound, Unavailable
from hanzo.server.models.file_versions import FileModelVersions
from hanzo.server.models.production import pin_production, read_pointer
from hanzo.server.models.promotion import Promotions
from hanzo.server.models.repository import READY, UNAVAILABLE


def _load(path):
    data = json.loads(path.read_text())  # a damaged file raises, as a damaged .npz does
    return data["answer"]


def _write(folder, version: int, answer: str | None = None, text: str | None = None) -> None:
    (folder / str(version)).mkdir(parents=True, exist_ok=True)
    (folder / str(version) / "m.npz").write_text(text if text is not None else json.dumps({"answer": answer}))


def _versions(folder) -> FileModelVersions:
    return FileModelVersions(folder, "m.npz", _load, "test model", "write one", check_every_s=0.0)


def _production_1_candidate_2(folder) -> FileModelVersions:
    _write(folder, 1, "one")
    pin_production(folder, by="test")
    _write(folder, 2, "two")
    return _versions(folder)


def _states(versions) -> dict[str, tuple[str, str]]:
    return {e.version: (e.state, e.reason) for e in versions.index()}


def test_without_a_pointer_the_newest_version_serves_and_changes_are_followed(tmp_path):
    folder = tmp_path / "pricing"
    versions = _versions(folder)
    with pytest.raises(Unavailable, match="does not exist yet: write one"):
        versions.current()
    _write(folder, 1, "one")
    assert versions.current().value == "one" and versions.candidate("pricing") is None
    _write(folder, 2, "two")
    assert versions.current().version == 2 and versions.production("pricing") is None
    _write(folder, 2, text="{not json")  # a rewrite that does not load: the copy read before serves
    os.utime(folder / "2" / "m.npz", ns=(1, 1))
    assert versions.current().value == "two"


def test_under_a_pointer_production_serves_and_the_candidate_answers_when_named(tmp_path):
    folder = tmp_path / "pricing"
    versions = _production_1_candidate_2(folder)
    assert versions.current().value == "one"
    assert versions.candidate("pricing").value == "two" and versions.version(2).value == "two"
    assert _states(versions)["2"][0] == READY and "candidate" in _states(versions)["2"][1]
    with pytest.raises(NotFound, match="no loaded version 7"):
        versions.version(7)
    _write(folder, 3, text="broken")  # the newest above production is the candidate, and it fails
    assert versions.current().value == "one" and versions.candidate("pricing") is None
    assert _states(versions)["3"][0] == UNAVAILABLE and "does not load" in _states(versions)["3"][1]


async def test_promote_and_rollback_through_the_repository_promotions(tmp_path):
    folder = tmp_path / "pricing"
    _write(folder, 1, "one")
    _write(folder, 2, "two")
    versions = _versions(folder)
    assert versions.current().version == 2  # no pointer yet: the newest
    promotions = Promotions(versions)
    with pytest.raises(FailedPrecondition, match="no earlier promoted version"):
        await promotions.rollback("pricing", "test")
    await promotions.promote("pricing", 1, "test")  # the first promotion seeds history with what served
    assert versions.current().value == "one" and read_pointer(folder).history == (2, 1)
    assert versions.candidate("pricing").version == 2  # above production again: the candidate
    await promotions.promote("pricing", 0, "test")  # 0: the candidate
    assert versions.current().value == "two" and versions.production("pricing").history == (2, 1, 2)
    await promotions.rollback("pricing", "test")
    assert versions.current().value == "one" and read_pointer(folder).action == "rollback"
    with pytest.raises(NotFound, match="not in the repository"):
        await promotions.promote("search", 1, "test")
    with pytest.raises(FailedPrecondition, match="production moved"):  # a compare-and-set that lost
        await promotions.promote("pricing", 2, "gate", expected=2)
    assert versions.current().value == "one"


async def test_a_version_that_does_not_load_is_never_switched_to(tmp_path):
    folder = tmp_path / "pricing"
    _write(folder, 1, "one")
    pin_production(folder, by="test")
    _write(folder, 2, text="broken")
    versions = _versions(folder)
    before = read_pointer(folder)
    with pytest.raises(FailedPrecondition, match="version 2 did not load"):
        await Promotions(versions).promote("pricing", 2, "test")
    assert read_pointer(folder) == before and versions.current().value == "one"


def test_a_damaged_pointer_leaves_what_served_serving(tmp_path):
    folder = tmp_path / "pricing"
    versions = _production_1_candidate_2(folder)
    assert versions.current().value == "one"
    (folder / "production.json").write_text("{")
    assert versions.current().value == "one"
    with pytest.raises(FailedPrecondition, match="not a production pointer"):
        Promotions(versions)._current("pricing")


def test_a_production_file_rewritten_broken_keeps_serving_its_copy_through_later_changes(tmp_path):
    folder = tmp_path / "pricing"
    _write(folder, 1, "one")
    _write(folder, 2, "two")
    pin_production(folder, by="test")  # production: 2
    versions = _versions(folder)
    assert versions.current().value == "two"
    _write(folder, 2, text="broken")
    os.utime(folder / "2" / "m.npz", ns=(5, 5))
    assert versions.current().value == "two"  # the copy read before
    _write(folder, 3, "three")  # an unrelated change: a new candidate
    assert versions.current().value == "two" and versions.candidate("pricing").value == "three"
