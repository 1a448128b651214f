"""`hanzo recommend-batch`: the email placement, served in batch: top-k for every user active
in the last days (read from the server's event log), asked of a running server's Recommend with
placement EMAIL, written as JSON lines {user_id, items: [{product_id, score, source}], ...}."""
from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import grpc
import orjson

from hanzo.v1 import commerce_pb2, commerce_pb2_grpc

from ..features.log import replay_log
from .common import CommandError, add_command, positive

DAY_MS = 86_400_000


def register(sub: argparse._SubParsersAction) -> None:
    parser = add_command(sub, "recommend-batch", "the email placement: top-k for every active user, to a file")
    parser.add_argument("--url", default="127.0.0.1:50051", help="a running server")
    parser.add_argument("--data-dir", type=Path, default=Path("hanzo_data"), help="the server's data directory")
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, one user each")
    parser.add_argument("--k", type=int, default=10, help="products per user")
    parser.add_argument("--active-days", type=float, default=30.0, help="users with an event in these last days")
    parser.add_argument("--concurrency", type=int, default=8, help="calls in flight")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if not (args.data_dir / "log").is_dir():
        raise CommandError(f"--data-dir {args.data_dir}: no event log there (a server's data directory has log/)")
    for flag in ("k", "active_days", "concurrency"):
        positive(f"--{flag.replace('_', '-')}", getattr(args, flag))
    users = active_users(args.data_dir, args.active_days)
    counts = asyncio.run(run(args.url, users, args.out, args.k, args.concurrency))
    print(f"{counts['users']} users ({counts['fallback']} from the popularity fallback) in {counts['seconds']} s "
          f"-> {args.out}")
    return 0


def active_users(data_dir: Path, days: float) -> list[str]:
    """Users with an event in the last `days` before the log's newest event."""
    last_seen: dict[str, int] = {}
    newest = 0
    for _, batch in replay_log(Path(data_dir) / "log"):
        for record in batch:
            ts = record["timestamp"]
            newest = max(newest, ts)
            user = record.get("user_id")
            if user and ts > last_seen.get(user, -1):
                last_seen[user] = ts
    floor = newest - days * DAY_MS
    return sorted(user for user, ts in last_seen.items() if ts > floor)


async def run(url: str, users: list[str], out: Path, k: int = 10, concurrency: int = 8) -> dict:
    started = time.monotonic()
    queue = list(reversed(users))
    counts = {"users": 0, "fallback": 0}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    async with grpc.aio.insecure_channel(url) as channel:
        stub = commerce_pb2_grpc.CommerceStub(channel)
        with open(tmp, "wb") as sink:
            async def worker() -> None:
                while queue:
                    user = queue.pop()
                    answer = await stub.Recommend(commerce_pb2.RecommendRequest(
                        user_id=user, k=k, placement=commerce_pb2.EMAIL, request_id=f"email-{user}"), timeout=30)
                    sink.write(orjson.dumps({
                        "user_id": user, "model_version": answer.model_version, "fallback": answer.fallback,
                        "items": [{"product_id": i.product_id, "score": round(i.score, 6), "source": i.source}
                                  for i in answer.items]}) + b"\n")
                    counts["users"] += 1
                    counts["fallback"] += answer.fallback

            await asyncio.gather(*(worker() for _ in range(concurrency)))
    tmp.replace(out)
    counts["seconds"] = round(time.monotonic() - started, 2)
    return counts
