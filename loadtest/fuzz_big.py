"""Big ids: Recommend calls whose user_id weighs megabytes. What it costs the server: its
memory, its log (a refusal that quotes the id whole writes it whole) and its data folder (a
served prediction is logged as an event), before and after, and what it answered."""
from __future__ import annotations

import concurrent.futures
import threading
import time
from collections import Counter

import grpc
from hanzo.v1 import commerce_pb2

from .fuzz_server import Served

SETTLE_S = 1.0  # let the server's log and event writers catch up before measuring


def big_ids(served: Served, calls: int = 60, size: int = 5 << 20, concurrency: int = 4,
            deadline_s: float = 10.0) -> dict:
    """`calls` Recommend calls, each with a `size`-byte user_id (a different one each time)."""
    channel = grpc.insecure_channel(served.url, options=[("grpc.max_send_message_length", -1),
                                                         ("grpc.max_receive_message_length", -1)])
    recommend = channel.unary_unary("/hanzo.v1.Commerce/Recommend", request_serializer=None,
                                    response_deserializer=None)
    before = {"rss_before_kib": served.rss_kib(), "log_bytes_before": served.log_bytes(),
              "data_bytes_before": served.data_bytes()}
    codes: Counter = Counter()
    messages: Counter = Counter()
    slowest = 0.0
    lock = threading.Lock()

    def one(i: int) -> None:
        nonlocal slowest
        user = chr(ord("a") + i % 26) * size
        body = commerce_pb2.RecommendRequest(user_id=user, k=10).SerializeToString()
        started = time.monotonic()
        try:
            recommend(body, timeout=deadline_s)
            code, message = "OK", ""
        except grpc.RpcError as exc:
            code, message = exc.code().name, (exc.details() or "")[:200]
        with lock:
            codes[code] += 1
            messages[f"{code}: {message}"] += 1
            slowest = max(slowest, time.monotonic() - started)

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(calls)))
    seconds = time.monotonic() - started
    time.sleep(SETTLE_S)
    channel.close()
    return {"calls": calls, "user_id_bytes": size, "seconds": round(seconds, 1), "slowest_s": round(slowest, 3),
            "codes": dict(codes), "messages": dict(messages.most_common(5)), **before,
            "rss_after_kib": served.rss_kib(), "log_bytes_after": served.log_bytes(),
            "data_bytes_after": served.data_bytes()}
