"""A running server's store is rebuilt (an erasure, a retention pass: service_rebuilds) in a
child process at the lowest CPU priority, so the
server's own event loop (reads, and the writes it goes on taking) keeps the CPU whenever it
wants it: a thread would hold the interpreter's lock in turns with the event loop for the
whole rebuild. The child is a fresh interpreter (never a fork of the serving process and its
threads) driven over its stdin and stdout, a JSON object a line each way:

    parent -> {"config": {...}, "job": "erasure", "merchant": M, "user": U}
              (or {"config": {...}, "job": "retention", "oldest_kept": ms})
                                                             child -> {"held": bool}
    parent -> {"do": "read", "until": N}                     child -> {"position": P}
    parent -> {"do": "seal"}                                 child -> {}
    parent -> {"do": "close"}                                child -> {"receipt": {...}, "state": {...}}

and exits: the rebuilt directory waits beside the data directory (rebase.staging_dir), and
the state (the job's `state()`) says how far it got, for the parent to take the rest of the
log into it and swap it in. A failure answers {"error": "..."}; a parent that goes (its end of the pipe
closes) or says {"do": "abandon"} leaves the store as it was."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from .store_config import FeatureStoreConfig

NICE = 19
_LINE_LIMIT = 1 << 24  # a receipt is small; this only bounds a child gone wrong


class ChildFailed(RuntimeError):
    """The rebuild in the child failed (its message) or the child died."""


class RebuildChild:
    """The parent's end."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, config: FeatureStoreConfig, job: dict) -> "RebuildChild":
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hanzo.server.features.rebuild_child", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, limit=_LINE_LIMIT)
        child = cls(process)
        child._send({"config": _encode(config), **job})
        return child

    async def begin(self) -> bool:
        return (await self._answer())["held"]

    async def read(self, until: int) -> int:
        self._send({"do": "read", "until": until})
        return (await self._answer())["position"]

    async def seal(self) -> None:
        self._send({"do": "seal"})
        await self._answer()

    async def close(self) -> dict:
        self._send({"do": "close"})
        closed = await self._answer()
        await self.process.wait()
        return closed

    async def abandon(self) -> None:
        """Stop the child and leave the store as it was (it removes its rebuilt directory)."""
        if self.process.returncode is None:
            try:
                self._send({"do": "abandon"})
                self.process.stdin.close()
                await asyncio.wait_for(self.process.wait(), 60)
            except (OSError, asyncio.TimeoutError):
                self.process.kill()
                await self.process.wait()

    def _send(self, message: dict) -> None:
        self.process.stdin.write(json.dumps(message).encode() + b"\n")

    async def _answer(self) -> dict:
        line = await self.process.stdout.readline()
        if not line:
            await self.process.wait()
            raise ChildFailed(f"the rebuild process ended (exit status {self.process.returncode})")
        answer = json.loads(line)
        if "error" in answer:  # a store that cannot be rebuilt is the caller's precondition, as offline
            raise (ValueError if answer.get("kind") == "ValueError" else ChildFailed)(answer["error"])
        return answer


def _encode(config: FeatureStoreConfig) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(config).items()}


def _job(request: dict):
    """What the parent asked for, with begin / read / seal / close / state / abandon."""
    config = FeatureStoreConfig(**request["config"])
    if request["job"] == "retention":
        from .retention_job import RetentionPass

        return RetentionPass(config, request["oldest_kept"])
    from .erasure import Erasure

    return Erasure(config, request["merchant"], request["user"])


def _reply(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _die_with_parent() -> None:
    """Linux: this process is killed when its parent dies (a SIGKILLed server must not leave a
    rebuild writing beside a store the next start cleans up)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the call
        sys.exit(1)


def main() -> int:
    """The child's end."""
    _die_with_parent()
    os.nice(NICE)
    request = json.loads(sys.stdin.readline())
    job = _job(request)
    try:
        _reply({"held": job.begin()})
        for line in sys.stdin:
            command = json.loads(line)
            if command["do"] == "read":
                _reply({"position": job.read(command["until"])})
            elif command["do"] == "seal":
                job.seal()
                _reply({})
            elif command["do"] == "close":
                _reply({"receipt": job.close(), "state": job.state()})
                return 0
            else:
                break
    except Exception as exc:  # the parent says what failed; the store stays as it was
        job.abandon()
        _reply({"error": str(exc)[:2000], "kind": "ValueError" if isinstance(exc, ValueError) else "other"})
        return 1
    job.abandon()  # abandoned, or the parent went
    return 0


if __name__ == "__main__":
    sys.exit(main())
