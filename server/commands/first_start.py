"""What `hanzo serve` does around the server on a demo: build the demo world on a first start
(in a child process, while the port already answers NOT_SERVING), move a demo's history forward
to the present on later starts, train the search re-ranker in the background once the server is
SERVING, and print what to try."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from ..app.config import ServerConfig
from ..features import lock
from ..features.lock import DirectoryBusy
from ..features.rebase import history_end, rebase_history, recover_rebase
from . import demo_world
from .demo_world import DATA_MARKER, DemoPaths

log = logging.getLogger("hanzo.demo")

# A demo history this far behind the wall clock is moved forward at start.
MOVE_HISTORY_AFTER_MS = 60_000
PR_SET_PDEATHSIG = 1


def _child_setup(parent: int, nice: bool) -> None:
    """In a build's child, before it runs: die with the server (a killed server must not leave a
    build writing into a staging folder the next start removes); at low priority if `nice`."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the server died before the line above
        os._exit(1)
    if nice:
        os.nice(19)


class DemoBuildFailed(RuntimeError):
    """A step of the demo's build exited with an error (its own log says why)."""


class FirstStart:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.paths = DemoPaths.of(config)
        self._own_catalog = config.features.catalog is not None  # before the demo's is filled in
        self._child: asyncio.subprocess.Process | None = None
        self._holds_data = False

    def prepare_config(self) -> None:
        demo_world.use_demo_files(self.config, self.paths)

    async def prepare(self) -> None:
        """Everything before the models load: recovery, the build, the history's move. Holds
        the data directory for the server's life (released by close()), and the demo world
        while it is recovered or built."""
        lock.acquire(self.config.features.data_dir, "server")
        self._holds_data = True
        await asyncio.to_thread(recover_rebase, self.config.features.data_dir)
        if self.config.demo_models and self._hold_demo(needed=not demo_world.has_models(self.paths.model_repo)
                                                       or self.paths.staging.exists()):
            try:
                await asyncio.to_thread(demo_world.recover, self.paths)
                if not demo_world.has_models(self.paths.model_repo):
                    await self._build()
            finally:
                lock.release(self.paths.world)
        if self.config.demo_models:
            for problem in demo_world.problems(self.paths):
                log.warning(f"{problem}; `hanzo serve --reset-demo` removes the demo's parts and builds it again",
                            extra={"model_repo": str(self.paths.model_repo)})
        demo_world.use_demo_files(self.config, self.paths)  # the catalogue a build has just made
        await asyncio.to_thread(self._move_history_forward)

    def _hold_demo(self, needed: bool) -> bool:
        """The demo world's lock, if no other server holds it; when this start must build or
        recover the demo and another server holds it, DirectoryBusy."""
        try:
            lock.acquire(self.paths.world, "demo build")
            return True
        except DirectoryBusy:
            if needed:
                raise
            return False

    def close(self) -> None:
        if self._holds_data:
            lock.release(self.config.features.data_dir)
            self._holds_data = False

    async def _build(self) -> None:
        from hanzo.training.demo_marketplace import torch_available
        from hanzo.training.demo_models import build_demo_repository

        paths = self.paths
        shutil.rmtree(paths.staging, ignore_errors=True)
        repo = paths.staging / "model_repo"
        names = await asyncio.to_thread(build_demo_repository, repo)
        moves = [(repo / name, paths.model_repo / name) for name in names]
        without = None
        if demo_world.holds_events(paths.data_dir):
            without = "the data directory holds events already (a shop's own history is never mixed with a " \
                      "simulated one)"
        elif self._own_catalog:
            without = "a catalogue was given (--catalog): the demo's would not be yours"
        elif not torch_available():
            without = "torch is not installed (pip install -e '.[train]' for a marketplace Recommend and Search " \
                      "answer from)"
        if without is not None:
            log.info(f"no demo marketplace: {without}", extra={"data_dir": str(paths.data_dir)})
            world = paths.staging / "demo_world"
            world.mkdir()
            (world / demo_world.MANIFEST).write_text(json.dumps({"marketplace": False, "why": without,
                                                                 "models": list(names)}))
            moves = [(world, paths.world)] + moves
        else:
            world, data = paths.staging / "demo_world", paths.staging / "hanzo_data"
            await self._run_child("build", "--world", str(world), "--model-repo", str(repo), "--data-dir", str(data))
            moves = [(world, paths.world), (data, paths.data_dir)] + moves
            moves += [(repo / name, paths.model_repo / name) for name in demo_world.model_folders(repo)
                      if name not in names]
        await asyncio.to_thread(demo_world.commit, paths.staging, moves)
        log.info("demo built", extra={"models": demo_world.model_folders(paths.model_repo)})

    async def _run_child(self, step: str, *args: str, nice: bool = False) -> None:
        command = [sys.executable, "-m", "hanzo.training.demo_marketplace", step, *args,
                   "--log-level", self.config.log_level, "--log-format", self.config.log_format]
        parent = os.getpid()
        self._child = await asyncio.create_subprocess_exec(*command, preexec_fn=lambda: _child_setup(parent, nice))
        try:
            code = await self._child.wait()
        finally:
            if self._child.returncode is None:  # cancelled: the server is stopping
                self._child.kill()
                await self._child.wait()
            self._child = None
        if code != 0:
            raise DemoBuildFailed(f"the demo's {step} step failed (exit status {code}); its log is above")

    def _move_history_forward(self) -> None:
        features = self.config.features
        if not (features.data_dir / DATA_MARKER).exists() or features.backend != "embedded":
            return
        end = history_end(features.data_dir)
        now_ms = int(time.time() * 1000)
        if end is None or now_ms - end < MOVE_HISTORY_AFTER_MS:
            return
        log.info("moving the demo's history forward to the present", extra={"hours": round((now_ms - end) / 3.6e6, 1)})
        try:
            rebase_history(features, now_ms - end)
        except ValueError as exc:
            log.warning(f"the demo's history stays where it is: {exc}")

    async def improve_search(self, repository) -> None:
        """Train the demo's re-ranker at low priority; serve it only if it beats BM25 on the
        validation searches. Search answers from BM25 meanwhile."""
        manifest = self.paths.manifest()
        if not self.config.demo_models or manifest is None or manifest.get("search", {}).get("state") != "pending":
            return
        if demo_world.has_models(self.paths.model_repo / "search") or not self._hold_demo(needed=False):
            return  # done, or another server beside this one is training it
        try:
            await self._train_search(repository, manifest)
        finally:
            lock.release(self.paths.world)

    async def _train_search(self, repository, manifest: dict) -> None:
        # an encoder without its scorer: a move cut short; the training below makes both again
        shutil.rmtree(self.paths.model_repo / "search_encoder", ignore_errors=True)
        staging = self.paths.search_staging
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        report_path = staging / "report.json"
        try:
            log.info("training the demo's search re-ranker in the background; Search answers from BM25 meanwhile")
            await self._run_child("search", "--world", str(self.paths.world), "--model-repo", str(staging / "repo"),
                                  "--report", str(report_path), nice=True)
            report = json.loads(report_path.read_text())
            if report["beats_bm25"]:
                self._move_search_in(staging / "repo")  # two renames: never left half done by a cancel
                await repository.load("search_encoder")
                await repository.load("search")
            manifest["search"] = {"state": "reranker" if report["beats_bm25"] else "bm25",
                                  "validation_ndcg10": report["training"]["validation_ndcg10"],
                                  "validation_bm25_ndcg10": report["training"]["validation_bm25_ndcg10"],
                                  "test": report["test"]}
            self.paths.write_manifest(manifest)
            log.info("the search re-ranker now answers Search" if report["beats_bm25"] else
                     "the search re-ranker did not beat BM25 on the validation searches: Search keeps BM25")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the demo's search re-ranker could not be trained; Search keeps BM25")
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _move_search_in(self, repo: Path) -> None:
        for name in ("search_encoder", "search"):  # the encoder first: a scorer never lacks its own
            shutil.move(str(repo / name), str(self.paths.model_repo / name))

    def try_lines(self, host: str, port: int) -> list[str]:
        address = f"{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"
        lines = [f"hanzo: SERVING on {address}"]
        manifest = self.paths.manifest()
        if manifest is None or not manifest.get("marketplace", True):
            return lines
        calls = [("Recommend", {"user_id": manifest["user_id"], "k": 10}),
                 ("Search", {"query": manifest["query"], "k": 10}),
                 ("QuotePrice", {"product_id": manifest["product_id"]}),
                 ("ScoreFraud", {"order": manifest["order"]}),
                 ("PlanInventory", {"product_id": manifest["product_id"], "location": manifest.get("location", "ALL")}),
                 ("GetFeatures", {"entity": "user", "entity_ids": [manifest["user_id"]]})]
        lines.append("hanzo: the demo marketplace answers; try, from another shell (or with grpcurl, through "
                     "the server's reflection):")
        url = "" if address == "127.0.0.1:50051" else f" --url {address}"
        for rpc, request in calls:
            lines.append(f"  hanzo call{url} {rpc} '{json.dumps(request)}'")
        lines.append(f"  hanzo loadtest{url} --rpc Recommend --request "
                     f"'{json.dumps(calls[0][1])}' --rate 200 --duration 10")
        return lines
