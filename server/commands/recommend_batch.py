"""`hanzo recommend-batch`: the email placement, served in batch: top-k for every user of the
audience (read from the server's event log), asked of a running server's Recommend with
placement EMAIL, each with the customer's churn outlook from ScoreCustomers, written as JSON
lines {user_id, items: [{product_id, score, source}], churn: {p_buy_again, risk_band, reasons}}.

The audience: users with an event in the last `--active-days` (active), buyers without one
(lapsed: the ones a win-back writes to), or both (all). A merchant's user, kept in the log as
`<merchant>|<id>`, is asked for under its merchant."""
from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import grpc
import orjson

from hanzo.v1 import commerce_pb2, commerce_pb2_grpc

from ..api.customers import MAX_ID_CHARS
from ..features.expiry import READ_EVENTS
from ..features.log import replay_log
from ..features.tenancy import SEPARATOR
from .common import CommandError, add_command, positive

DAY_MS = 86_400_000
AUDIENCES = ("all", "active", "lapsed")
CHURN_BATCH = 100  # customers per ScoreCustomers call


def register(sub: argparse._SubParsersAction) -> None:
    parser = add_command(sub, "recommend-batch", "the email placement: top-k for every user of an audience, to a file")
    parser.add_argument("--url", default="127.0.0.1:50051", help="a running server")
    parser.add_argument("--data-dir", type=Path, default=Path("hanzo_data"), help="the server's data directory")
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, one user each")
    parser.add_argument("--k", type=int, default=10, help="products per user")
    parser.add_argument("--audience", choices=AUDIENCES, default="all",
                        help="active: an event in the last --active-days; lapsed: bought before, no event since; all")
    parser.add_argument("--active-days", type=float, default=30.0, help="what counts as active")
    parser.add_argument("--churn-horizon-days", type=int, default=30,
                        help="the churn outlook's horizon (ScoreCustomers); 0: leave the outlook out")
    parser.add_argument("--concurrency", type=int, default=8, help="calls in flight")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if not (args.data_dir / "log").is_dir():
        raise CommandError(f"--data-dir {args.data_dir}: no event log there (a server's data directory has log/)")
    for flag in ("k", "active_days", "concurrency"):
        positive(f"--{flag.replace('_', '-')}", getattr(args, flag))
    if args.churn_horizon_days < 0:
        raise CommandError(f"--churn-horizon-days must be >= 0, not {args.churn_horizon_days}")
    users = audience(args.data_dir, args.active_days, args.audience)
    counts = asyncio.run(run(args.url, users, args.out, args.k, args.concurrency, args.churn_horizon_days))
    print(f"{counts['users']} users ({counts['fallback']} from the popularity fallback, {counts['lapsed']} lapsed) "
          f"in {counts['seconds']} s -> {args.out}")
    return 0


def audience(data_dir: Path, days: float, who: str = "all") -> dict[str, bool]:
    """The audience's users, sorted, each with whether it is lapsed: no event in the last `days`
    before the log's newest event, though it bought before."""
    last_seen: dict[str, int] = {}
    buyers: set[str] = set()
    newest = 0
    for _, batch in replay_log(Path(data_dir) / "log"):
        for record in batch:
            ts = record["timestamp"]
            newest = max(newest, ts)
            user = record.get("user_id")
            if record["event_type"] in READ_EVENTS:  # logged by reads (this batch's own, last night): not a visit
                continue
            if user and ts > last_seen.get(user, -1):
                last_seen[user] = ts
            if user and record["event_type"] == "purchase":  # as the customer models count buying
                buyers.add(user)
    floor = newest - days * DAY_MS
    lapsed = {user: ts <= floor for user, ts in last_seen.items() if ts > floor or user in buyers}
    keep = {"all": lambda gone: True, "active": lambda gone: not gone, "lapsed": lambda gone: gone}[who]
    return {user: gone for user, gone in sorted(lapsed.items()) if keep(gone)}


def active_users(data_dir: Path, days: float) -> list[str]:
    """Users with an event in the last `days` before the log's newest event."""
    return list(audience(data_dir, days, "active"))


def _merchant(user: str) -> tuple[str, str]:
    merchant, _, own = user.partition(SEPARATOR) if SEPARATOR in user else ("", "", user)
    return merchant, own


async def _churn(stub, users: list[str], horizon_days: int) -> dict[str, dict]:
    """Each user's outlook from ScoreCustomers, asked per merchant in batches."""
    by_merchant: dict[str, list[str]] = {}
    for user in users:
        merchant, own = _merchant(user)
        if len(own) <= MAX_ID_CHARS:  # longer ones (an older log's) are written without an outlook
            by_merchant.setdefault(merchant, []).append(own)
    outlooks = {}
    for merchant, own in by_merchant.items():
        for start in range(0, len(own), CHURN_BATCH):
            try:
                answer = await stub.ScoreCustomers(commerce_pb2.CustomersRequest(
                    merchant_id=merchant, user_ids=own[start:start + CHURN_BATCH], horizon_days=horizon_days),
                    timeout=30)
            except grpc.aio.AioRpcError as error:
                raise CommandError(f"ScoreCustomers: {error.details()} (or --churn-horizon-days 0 to leave the "
                                   "churn outlook out)") from None
            for outlook in answer.customers:
                key = f"{merchant}{SEPARATOR}{outlook.user_id}" if merchant else outlook.user_id
                outlooks[key] = {"p_buy_again": round(outlook.p_buy_again, 4), "risk_band": outlook.risk_band,
                                 "reasons": list(outlook.reasons)} if outlook.known else None
    return outlooks


async def run(url: str, users: dict[str, bool], out: Path, k: int = 10, concurrency: int = 8,
              churn_horizon_days: int = 30) -> dict:
    started = time.monotonic()
    queue = list(reversed(users))
    counts = {"users": 0, "fallback": 0, "lapsed": sum(users.values())}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    async with grpc.aio.insecure_channel(url) as channel:
        stub = commerce_pb2_grpc.CommerceStub(channel)
        churn = await _churn(stub, list(users), churn_horizon_days) if churn_horizon_days else {}
        with open(tmp, "wb") as sink:
            async def worker() -> None:
                while queue:
                    user = queue.pop()
                    merchant, own = _merchant(user)
                    answer = await stub.Recommend(commerce_pb2.RecommendRequest(
                        merchant_id=merchant, user_id=own, k=k, placement=commerce_pb2.EMAIL,
                        request_id=f"email-{own}"[:256]), timeout=30)
                    row = {"user_id": user, "lapsed": users[user], "model_version": answer.model_version,
                           "fallback": answer.fallback,
                           "items": [{"product_id": i.product_id, "score": round(i.score, 6), "source": i.source}
                                     for i in answer.items]}
                    if churn_horizon_days:
                        row["churn"] = churn.get(user)
                    sink.write(orjson.dumps(row) + b"\n")
                    counts["users"] += 1
                    counts["fallback"] += answer.fallback

            try:
                await asyncio.gather(*(worker() for _ in range(concurrency)))
            except grpc.aio.AioRpcError as error:
                raise CommandError(f"Recommend: {error.details()}") from None
    tmp.replace(out)
    counts["seconds"] = round(time.monotonic() - started, 2)
    return counts
