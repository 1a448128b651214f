"""The feature store in a real server process: online values over gRPC equal the offline join
from the log files; a SIGKILL mid-stream loses no acknowledged event and counts none twice."""
import signal
import threading
import time

import grpc
import numpy as np
import pytest
from helpers import ServerProcess, simulated_world

from hanzo.server.features.events import record_to_proto
from hanzo.server.features.offline import get_historical_features, load_log_records
from hanzo.server.features.pseudonyms import PERSONAL_ENTITIES, Pseudonyms, store_key
from hanzo.v1 import commerce_pb2, commerce_pb2_grpc

pytestmark = pytest.mark.slow
ENTITIES = ("user", "session", "product", "card", "device")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return simulated_world(tmp_path_factory.mktemp("world"), days=8, seed=21, users=300, products=150, fraud_level=15)


def batches(events, size):
    out = []
    for start in range(0, len(events), size):
        request = commerce_pb2.EventBatch(request_id=f"b{start}")
        for record in events[start:start + size]:
            record_to_proto(record, request.events.add())
        out.append(request)
    return out


def start_server(tmp_path, world_dir, *extra):
    repo = tmp_path / "model_repo"
    repo.mkdir(exist_ok=True)
    return ServerProcess(repo, "--no-demo-models", "--data-dir", str(tmp_path / "data"), "--catalog",
                         str(world_dir / "catalog.jsonl"), *extra).wait_ready()


def read_online(stub, entity, ids):
    response = stub.GetFeatures(commerce_pb2.FeaturesRequest(entity=entity, entity_ids=ids), timeout=10)
    shape = (len(ids), len(response.columns))
    values = np.frombuffer(response.values, np.float32).reshape(shape)
    missing = np.frombuffer(response.missing, np.uint8).reshape(shape)
    sequences = {}
    for sequence in response.sequences:
        items, start, per_entity = list(sequence.items), 0, []
        for count in sequence.counts:
            per_entity.append(items[start:start + count])
            start += count
        sequences[sequence.name] = per_entity
    return response.as_of.ToMilliseconds(), values, missing, sequences


@pytest.mark.parametrize("backend", ["embedded", "redis"])
def test_online_over_grpc_equals_offline_from_the_log(tmp_path, world, backend, request):
    world_dir, events = world
    extra, redis_url = (), None
    if backend == "redis":
        request.getfixturevalue("redis_client")  # a fresh, empty redis-server
        redis_url = request.getfixturevalue("redis_server")
        extra = ("--feature-backend", "redis", "--redis-url", redis_url)
    server = start_server(tmp_path, world_dir, *extra)
    stub = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(server.url))
    rng = np.random.default_rng(1)
    seen: dict[str, set] = {e: set() for e in ENTITIES}
    snapshots = []
    requests = batches(events, 300)
    moments = {len(requests) // 3, 2 * len(requests) // 3, len(requests) - 1}
    for i, request in enumerate(requests):
        ack = stub.IngestEvents(request, timeout=30)
        assert ack.accepted == len(request.events) and not ack.rejects
        for event in request.events:
            seen["user"].add(event.user_id) if event.HasField("user_id") else None
            seen["session"].add(event.session_id)
            for key, entity in ((event.payload.product_id, "product"), (event.payload.card_id, "card"),
                                (event.payload.device_id, "device")):
                if key:
                    seen[entity].add(key)
        if i in moments:
            for entity in ENTITIES:
                pool = sorted(seen[entity] - {""})
                ids = [pool[j] for j in rng.choice(len(pool), size=min(40, len(pool)), replace=False)] + ["unknown"]
                snapshots.append((entity, ids, *read_online(stub, entity, ids)))
    records = load_log_records(tmp_path / "data")
    assert len(records) == len(events)
    # the log holds cards by their pseudonyms (features/pseudonyms.py): the offline join is asked the same way
    redis_client = None
    if redis_url is not None:
        import redis

        redis_client = redis.Redis.from_url(redis_url)
    pseudonyms = Pseudonyms(store_key("", tmp_path / "data", redis_client))
    assert not any(r["payload"].get("email") and not r["payload"]["email"].startswith("h:") for r in records)
    compared = 0
    for entity, ids, as_of, values, missing, sequences in snapshots:
        names = [f for f in _feature_names(entity)]
        asked = [pseudonyms.of(i) for i in ids] if entity in PERSONAL_ENTITIES else ids
        offline = get_historical_features(records, entity, [(i, as_of) for i in asked], names,
                                          catalog=world_dir / "catalog.jsonl")
        np.testing.assert_array_equal(values, offline.values, err_msg=f"{entity} at {as_of}")
        np.testing.assert_array_equal(missing, offline.missing)
        assert sequences == offline.sequences
        compared += values.size
    assert compared > 3000
    assert server.terminate() == 0


def _feature_names(entity):
    from hanzo.server.features.definitions import FEATURES

    return [f.name for f in FEATURES if f.entity == entity]


def test_sigkill_mid_stream_loses_no_acknowledged_event(tmp_path, world):
    world_dir, events = world
    server = start_server(tmp_path, world_dir)
    requests = batches(events, 100)
    acked: list[int] = []
    failures: list[str] = []

    def stream():
        stub = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(server.url))
        for i, request in enumerate(requests):
            try:
                stub.IngestEvents(request, timeout=10)
                acked.append(i)
            except grpc.RpcError as exc:
                failures.append(exc.code().name)
                return

    threads = [threading.Thread(target=stream)]
    threads[0].start()
    while len(acked) < len(requests) // 2:
        time.sleep(0.01)
    server.proc.send_signal(signal.SIGKILL)
    threads[0].join(30)
    server.proc.wait(10)
    assert failures, "the stream should have been cut by the kill"
    # Every acknowledged event is in the log exactly once.
    logged = [r["event_id"] for r in load_log_records(tmp_path / "data")]
    assert len(logged) == len(set(logged))
    acked_ids = {e.event_id for i in acked for e in requests[i].events}
    assert acked_ids <= set(logged)
    # Restart; the client resends everything (it cannot know what the last batch did).
    server = start_server(tmp_path, world_dir)
    stub = commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(server.url))
    duplicates = 0
    for request in requests:
        ack = stub.IngestEvents(request, timeout=30)
        duplicates += ack.duplicates
    assert duplicates >= len(acked_ids)
    records = load_log_records(tmp_path / "data")
    assert sorted(r["event_id"] for r in records) == sorted(e["event_id"] for e in events)
    for entity in ("user", "product"):
        keys = {r["user_id"] if entity == "user" else r["payload"].get("product_id") for r in records}
        ids = sorted(keys - {None})[:60]
        as_of, values, missing, sequences = read_online(stub, entity, ids)
        offline = get_historical_features(records, entity, [(i, as_of) for i in ids], _feature_names(entity),
                                          catalog=world_dir / "catalog.jsonl")
        np.testing.assert_array_equal(values, offline.values)
        assert sequences == offline.sequences
    assert server.terminate() == 0
