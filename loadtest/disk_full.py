"""A full disk under the event log, for real: a small tmpfs mounted for the data directory.

    python -m hanzo.loadtest.disk_full --out loadtest/reports/disk-full.json [--size-kib 2048] [--workdir DIR]

(needs the right to mount a tmpfs: root, or sudo without a password.) A server is started with its data
directory on the small filesystem; a filler file takes most of the space; a simulated
marketplace's events are streamed in batches through IngestEvents, each batch sent until it is
acknowledged, as a client would. When the disk fills the server refuses (the codes and messages
are counted); after a while the filler is deleted and the stream goes on, and the time from the
space's return to the next acknowledgement is taken. At the end: every acknowledged event in
the log once, and the server restarted on the directory opens it without damage."""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import grpc

from hanzo.v1 import commerce_pb2_grpc

from .crash_rounds import Stream, check_log, simulated_events, start
from .reports import print_report


def _privileged(command: list[str]) -> list[str]:
    """As root, or through sudo without a password where that is allowed (a CI runner)."""
    if os.geteuid() == 0 or not shutil.which("sudo"):
        return command
    return ["sudo", "-n", *command]


def mount_small(path: Path, size_kib: int) -> None:
    """A tmpfs of `size_kib` at `path`, owned by this user."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size_kib}k,uid={os.getuid()},gid={os.getgid()},mode=0755"
    subprocess.run(_privileged(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)]), check=True,
                   capture_output=True, timeout=30)


def unmount(path: Path) -> None:
    subprocess.run(_privileged(["umount", str(path)]), capture_output=True, timeout=30)


def can_mount(workdir: Path) -> bool:
    probe = workdir / "mount-probe"
    try:
        mount_small(probe, 64)
    except (subprocess.CalledProcessError, OSError):
        return False
    unmount(probe)
    return True


def fill(path: Path, leave_bytes: int) -> Path:
    """A file taking all but about `leave_bytes` of the filesystem at `path`."""
    filler = path / "filler"
    free = shutil.disk_usage(path).free
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave_bytes))
    return filler


def stream_through(stream: Stream, url: str, full_for_s: float, filler: Path) -> dict:
    """Send every batch until acknowledged; free the disk `full_for_s` after the first refusal."""
    stub = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(url))
    refusals: dict[str, int] = {}
    messages: set[str] = set()
    first_refusal = freed_at = recovered_s = None
    while stream.next < len(stream.batches):
        try:
            stream.send_next(stub)
        except grpc.RpcError as exc:
            refusals[exc.code().name] = refusals.get(exc.code().name, 0) + 1
            messages.add(exc.details()[:200])
            first_refusal = first_refusal or time.monotonic()
            if freed_at is None and time.monotonic() - first_refusal >= full_for_s:
                filler.unlink()
                freed_at = time.monotonic()
            time.sleep(0.05)
            continue
        if freed_at is not None and recovered_s is None:
            recovered_s = round(time.monotonic() - freed_at, 3)
    return {"refusals": refusals, "messages": sorted(messages), "recovered_s": recovered_s}


def run(args: argparse.Namespace) -> dict:
    args.workdir.mkdir(parents=True, exist_ok=True)
    world = args.workdir / "world"
    events = simulated_events(world, args.days, args.seed, users=300, products=120)
    stream = Stream(events, args.batch)
    disk = args.workdir / "disk"
    mount_small(disk, args.size_kib)
    config = args.workdir / "disk-full.toml"
    config.write_text("[features]\nsnapshot_every_events = 100000000\n")
    try:
        process, url = start(args.workdir, disk / "data", world, config, None)
        try:
            filler = fill(disk, args.leave_kib * 1024)
            result = stream_through(stream, url, args.full_seconds, filler)
        finally:
            process.terminate()
            process.wait(60)
        reopened, url = start(args.workdir, disk / "data", world, config, None)  # opens: no damage
        reopened.terminate()
        reopened.wait(60)
        log = check_log(disk / "data", stream.acked)
    finally:
        unmount(disk)
    return {"size_kib": args.size_kib, "leave_kib": args.leave_kib, "events": len(events), "batch": args.batch,
            "acked": len(stream.acked), **result, **log, "restart_opened": True}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m hanzo.loadtest.disk_full", description=__doc__.split("\n")[0])
    parser.add_argument("--size-kib", type=int, default=8192, help="the small filesystem's size")
    parser.add_argument("--leave-kib", type=int, default=256, help="space the filler leaves for the log")
    parser.add_argument("--full-seconds", type=float, default=2.0, help="how long the disk stays full")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--days", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hanzo-disk-full"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if not can_mount(args.workdir):
        print("disk_full: mounting a tmpfs is not permitted here (needs root, or sudo without a password)",
              file=sys.stderr)
        raise SystemExit(2)
    return print_report(run(args), args.out)


if __name__ == "__main__":
    main()
