"""The Feast half of `python -m hanzo.loadtest.feast_compare` (run with the Feast venv's
interpreter; imports nothing from Hanzo): load the values Hanzo computed into a Feast feature
view on Redis, check Feast serves them back, and time get_online_features.

    python feast_side.py WORKDIR REDIS_HOST:PORT REPEATS
WORKDIR holds values.json ({"entity_ids": [...], "columns": [...], "values": [[...]]}); the
result is written to WORKDIR/feast_result.json.
"""
import json
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from feast import Entity, FeatureStore, FeatureView, Field, FileSource
from feast.types import Float32


def main() -> None:
    workdir, redis_address, repeats = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    data = json.loads((workdir / "values.json").read_text())
    ids, columns = data["entity_ids"], data["columns"]
    values = np.array(data["values"], dtype=np.float32)
    repo = workdir / "feast_repo"
    repo.mkdir(exist_ok=True)
    (repo / "feature_store.yaml").write_text(
        "project: hanzo_compare\nregistry: registry.db\nprovider: local\n"
        f"online_store:\n  type: redis\n  connection_string: \"{redis_address}\"\n"
        "offline_store:\n  type: file\nentity_key_serialization_version: 3\n")
    now = datetime.now(timezone.utc)
    frame = pd.DataFrame(values, columns=columns)
    frame.insert(0, "user_id", ids)
    frame["event_timestamp"] = now - timedelta(minutes=5)
    frame.to_parquet(repo / "values.parquet")
    user = Entity(name="user", join_keys=["user_id"])
    view = FeatureView(name="user_features", entities=[user], ttl=timedelta(days=3650),
                       schema=[Field(name=c, dtype=Float32) for c in columns],
                       source=FileSource(path=str(repo / "values.parquet"), timestamp_field="event_timestamp"),
                       online=True)
    store = FeatureStore(repo_path=str(repo))
    store.apply([user, view])
    store.materialize(now - timedelta(days=1), now)
    refs = [f"user_features:{c}" for c in columns]
    served = store.get_online_features(features=refs, entity_rows=[{"user_id": u} for u in ids]).to_dict()
    got = np.array([served[c] for c in columns], dtype=np.float32).T
    same = bool(np.array_equal(got, values))
    result = {"same_values": same, "columns": len(columns)}
    for label, rows in (("1", ids[:1]), ("100", ids[:100])):
        entity_rows = [{"user_id": u} for u in rows]
        for _ in range(20):
            store.get_online_features(features=refs, entity_rows=entity_rows)
        times = []
        for _ in range(repeats if label == "1" else max(repeats // 5, 20)):
            start = time.perf_counter()
            store.get_online_features(features=refs, entity_rows=entity_rows).to_dict()
            times.append((time.perf_counter() - start) * 1000)
        result[label] = {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99)),
                         "calls": len(times)}
    (workdir / "feast_result.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
