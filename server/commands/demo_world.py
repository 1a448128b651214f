"""The demo world of a first `hanzo serve`: where its parts live, how they are built whole or
not at all, how a later start finds them (complete, partial, or left half-moved by a crash),
and how they are removed again.

A first start builds in a staging folder beside the repository. Only when everything there is
built does it write a journal of the moves into place (COMMIT); the moves are renames and are
finished by the next start if a crash cuts them short. A build that never reached COMMIT
leaves nothing but the staging folder, which the next start removes."""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from hanzo.training.demo_marketplace import CATALOG, DATA_MARKER, DEMO_INVENTORY_PLAN, DEMO_PRICING_MODEL, MANIFEST

from ..app.config import ServerConfig
from ..features import lock
from ..models.files import write_text_atomic
from .common import CommandError

log = logging.getLogger("hanzo.demo")

DEMO_MODELS = ("demo_risk_mlp", "demo_user_tower")
# Every model folder a demo may write: what --reset-demo may remove.
DEMO_MODEL_FOLDERS = DEMO_MODELS + ("recommend", "fraud", "search", "search_encoder")
COMMIT = "COMMIT"
RESET = ".hanzo-reset"  # beside the repository: the journal of a --reset-demo under way
WORLD_FILES = {MANIFEST, CATALOG, DEMO_PRICING_MODEL, DEMO_INVENTORY_PLAN, "events.jsonl.gz", "truth.json", "sales.csv",
               f".{MANIFEST}.tmp"}


@dataclass(frozen=True)
class DemoPaths:
    model_repo: Path
    data_dir: Path
    world: Path  # the simulated marketplace: its catalogue, events, manifest, pricing model, plan
    staging: Path  # where a first start builds before moving in
    search_staging: Path  # where the background re-ranker is trained

    @property
    def reset_journal(self) -> Path:
        return self.model_repo.parent / RESET

    @classmethod
    def of(cls, config: ServerConfig) -> "DemoPaths":
        return cls.of_paths(config.model_repo, config.features.data_dir)

    @classmethod
    def of_paths(cls, model_repo: Path, data_dir: Path) -> "DemoPaths":
        """The demo world and the staging folders live beside the repository."""
        repo = Path(model_repo).resolve()
        return cls(repo, Path(data_dir).resolve(), repo.parent / "demo_world", repo.parent / ".hanzo-first-start",
                   repo.parent / ".hanzo-demo-search")

    def manifest(self) -> dict | None:
        try:
            return json.loads((self.world / MANIFEST).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def write_manifest(self, manifest: dict) -> None:
        write_text_atomic(self.world / MANIFEST, json.dumps(manifest, indent=1, default=float))


def model_folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if root.is_dir() else []


def has_models(root: Path) -> bool:
    return bool(model_folders(root))


def use_demo_files(config: ServerConfig, paths: DemoPaths) -> None:
    """Point what the configuration leaves unset at the demo world's catalogue, pricing model
    and inventory plan (read when first needed, so they may still be being built)."""
    if not config.demo_models:
        return
    if config.features.catalog is None and (paths.world / CATALOG).exists():
        config.features.catalog = paths.world / CATALOG
    if not config.pricing.model:
        config.pricing.model = str(paths.world / DEMO_PRICING_MODEL)
    if not config.inventory.plan:
        config.inventory.plan = str(paths.world / DEMO_INVENTORY_PLAN)


def recover(paths: DemoPaths) -> None:
    """Finish what a crash interrupted: a reset, a committed first start's moves; remove a build
    that never committed and a search training's leftovers. (A history moved in time is
    recovered by the server that holds the data directory.)"""
    if paths.reset_journal.exists():
        log.warning("finishing a --reset-demo that was interrupted", extra={"journal": str(paths.reset_journal)})
        _remove_journalled(paths.reset_journal)
    if (paths.staging / COMMIT).exists():
        log.warning("finishing the moves of a first start that was interrupted after its build",
                    extra={"staging": str(paths.staging)})
        roll_forward(paths.staging)
    elif paths.staging.exists():
        log.warning("removing an unfinished demo build (a first start was interrupted)",
                    extra={"staging": str(paths.staging)})
        shutil.rmtree(paths.staging)
    shutil.rmtree(paths.search_staging, ignore_errors=True)


def commit(staging: Path, moves: list[tuple[Path, Path]]) -> None:
    """Journal the moves, then make them."""
    # whole and on disk before anything it names is touched
    write_text_atomic(staging / COMMIT, json.dumps([[str(a), str(b)] for a, b in moves]), fsync=True)
    roll_forward(staging)


def roll_forward(staging: Path) -> None:
    """Every journalled move not yet made, in order (each is a rename, so each is whole), then
    the staging folder removed."""
    for source, target in (map(Path, pair) for pair in json.loads((staging / COMMIT).read_text())):
        if not source.exists():
            continue  # moved before the crash
        if target.exists() and (demo_made(target) or holds_nothing(target)):
            shutil.rmtree(target)  # an empty folder waiting for it, or an older (or half-removed) demo world
        elif target.exists():  # made by someone else meanwhile: theirs is kept, never mixed with the demo's
            log.warning("kept what appeared during the demo's build; the demo's copy is dropped",
                        extra={"path": str(target)})
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), str(target))  # a rename on one file system
    shutil.rmtree(staging)


def holds_nothing(path: Path) -> bool:
    """A folder whose files are all empty (a store opened once and never written to)."""
    return path.is_dir() and all(p.stat().st_size == 0 for p in path.rglob("*") if p.is_file())


def holds_events(data_dir: Path) -> bool:
    return Path(data_dir).is_dir() and not holds_nothing(data_dir)


def demo_made(world: Path) -> bool:
    """A world folder holding nothing but what a demo writes there."""
    return world.is_dir() and {p.name for p in world.iterdir()} <= WORLD_FILES


def problems(paths: DemoPaths) -> list[str]:
    """What is missing from a demo that a start found built: each a sentence."""
    found = set(model_folders(paths.model_repo))
    manifest = paths.manifest()
    out = []
    if manifest is not None:
        expected = set(DEMO_MODELS) | set(manifest.get("models", []))
        if manifest.get("search", {}).get("state") == "reranker":
            expected |= {"search", "search_encoder"}
        missing = sorted(expected - found)
        if missing:
            out.append(f"{paths.model_repo} lacks the demo models {missing} that {paths.world / MANIFEST} lists")
        if manifest.get("marketplace", True) and not (paths.data_dir / DATA_MARKER).exists() \
                and not holds_events(paths.data_dir):
            out.append(f"{paths.data_dir} has none of the demo's history")
    elif found & set(DEMO_MODELS) and not found - set(DEMO_MODEL_FOLDERS) and "recommend" not in found:
        out.append(f"{paths.model_repo} holds the demo models {sorted(found)} but not the demo marketplace "
                   f"({paths.world / MANIFEST} is missing): a first start of an earlier Hanzo was interrupted")
    return out


def reset(paths: DemoPaths) -> list[Path]:
    """Remove what a demo built: its model folders (only when the repository holds nothing
    else), its history, its world. Returns what was removed."""
    others = sorted(set(model_folders(paths.model_repo)) - set(DEMO_MODEL_FOLDERS))
    if others:
        raise CommandError(f"--reset-demo: {paths.model_repo} also holds {others}, which no demo builds; "
                           f"remove the demo's folders by hand")
    if holds_events(paths.data_dir) and not (paths.data_dir / DATA_MARKER).exists():
        raise CommandError(f"--reset-demo: {paths.data_dir} holds events that are not the demo's; give another "
                           f"--data-dir or remove it by hand")
    removed = [p for p in (paths.data_dir, paths.world, paths.staging, paths.search_staging) if p.exists()]
    removed += [paths.model_repo / name for name in model_folders(paths.model_repo)]
    lock.acquire(paths.data_dir, "server")  # never under a server that is running on them
    try:
        lock.acquire(paths.world, "demo build")
        try:
            write_text_atomic(paths.reset_journal, json.dumps([str(p) for p in removed]), fsync=True)
            _remove_journalled(paths.reset_journal)
        finally:
            lock.release(paths.world)
    finally:
        lock.release(paths.data_dir)
    return removed


def _remove_journalled(journal: Path) -> None:
    """Remove every path the journal names (those already gone are skipped), then the journal:
    a reset cut short is finished by the next start, never left half done."""
    for path in json.loads(journal.read_text()):
        shutil.rmtree(path, ignore_errors=True)
    journal.unlink()
