"""A snapshot written by a forked child, so the serving process never stops for it.

fork() gives the child a copy-on-write image of the store as it stands between two batches:
consistent without copying a byte and without holding a lock, the way Redis's BGSAVE does it.
The parent pauses only for the fork itself (copying page tables); the child serializes,
writes, fsyncs and verifies at the lowest CPU priority, reports one JSON line through a pipe
and leaves with os._exit, running no handler of the parent's libraries.

The child owns nothing the parent uses: it closes its copy of the data directory's lock (a
parent killed mid-snapshot frees the directory at once), dies with its parent
(PR_SET_PDEATHSIG), and never touches gRPC, Redis or the log writer, whose threads do not
exist in it (a lock one of them held at the fork stays held there forever)."""
from __future__ import annotations

import ctypes
import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from . import lock

_PR_SET_PDEATHSIG = 1
_SYS_IOPRIO_SET = {"x86_64": 251, "aarch64": 30}.get(os.uname().machine, -1)  # -1: ENOSYS, no harm
_IOPRIO_WHO_PROCESS, _IOPRIO_CLASS_IDLE, _IOPRIO_CLASS_SHIFT = 1, 3, 13


class SnapshotFailed(RuntimeError):
    """The child could not write its snapshot (its reason is the message)."""


@dataclass
class SnapshotChild:
    pid: int
    reader: int  # the pipe the child reports through
    seq: int
    fork_seconds: float  # how long the parent stood still
    _done: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _outcome: dict[str, Any] | SnapshotFailed | None = field(default=None, repr=False)

    def wait(self) -> dict[str, Any]:
        """Block until the child ends; its report, or SnapshotFailed. Call from a worker thread;
        callers after the first get the same outcome."""
        with self._done:
            if self._outcome is None:
                try:
                    self._outcome = self._reap()
                except SnapshotFailed as exc:
                    self._outcome = exc
        if isinstance(self._outcome, SnapshotFailed):
            raise self._outcome
        return self._outcome

    def _reap(self) -> dict[str, Any]:
        chunks = []
        try:
            while chunk := os.read(self.reader, 65536):
                chunks.append(chunk)
        finally:
            os.close(self.reader)
        _, status = os.waitpid(self.pid, 0)
        text = b"".join(chunks).decode(errors="replace")
        try:
            report = json.loads(text) if text else {}
        except ValueError:
            report = {"error": text[:300]}
        if os.waitstatus_to_exitcode(status) != 0 or "error" in report:
            code = os.waitstatus_to_exitcode(status)
            reason = report.get("error") or (f"killed by signal {-code}" if code < 0 else f"exit status {code}")
            raise SnapshotFailed(f"the snapshot at sequence {self.seq} was not written: {reason}")
        return report


def start(write: Callable[[], dict[str, Any]], seq: int) -> SnapshotChild:
    """Fork; the child runs `write` (which returns a JSON-able report) and exits. OSError when
    the fork itself fails (no memory for the page tables, a process limit)."""
    reader, writer = os.pipe()
    parent = os.getpid()
    started = time.perf_counter()
    try:
        pid = os.fork()
    except OSError:
        os.close(reader)
        os.close(writer)
        raise
    if pid == 0:  # pragma: no cover - the child's lines are reported through the pipe, not traced
        os.close(reader)
        _run_child(write, writer, parent)
    os.close(writer)
    return SnapshotChild(pid, reader, seq, time.perf_counter() - started)


def _run_child(write: Callable[[], dict[str, Any]], writer: int, parent: int) -> None:
    code = 1
    try:
        _detach(parent)
        report = write()
        code = 0
    except BaseException as exc:  # noqa: BLE001 - whatever it was, the parent hears it and the child leaves
        report = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    try:
        os.write(writer, json.dumps(report).encode())
    finally:
        os._exit(code)


def _detach(parent: int) -> None:
    """Let go of what belongs to the parent and step out of its way."""
    lock.close_inherited()
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_DFL)
    try:
        signal.set_wakeup_fd(-1)  # a signal to the child must not wake the parent's event loop
    except ValueError:  # not the main thread: no wakeup descriptor was ever set here
        pass
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)
    _yield_to_everyone(libc)


def _yield_to_everyone(libc) -> None:
    """Run only when the CPU and the disk have nothing else to do: SCHED_IDLE (a waking server
    thread preempts it at once, where nice 19 still takes slices) and the idle I/O class."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(19)
    libc.syscall(_SYS_IOPRIO_SET, _IOPRIO_WHO_PROCESS, 0, _IOPRIO_CLASS_IDLE << _IOPRIO_CLASS_SHIFT)
