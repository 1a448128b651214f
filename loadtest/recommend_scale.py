"""Recommend at scale: a marketplace of 200,000 products and 1,000,000 users, built to measure
speed (not quality): the real two-tower architecture (untrained weights), item embeddings with
category structure, its HNSW index, synthetic co-visitation and popularity, a catalog, and a
feature store holding every user's recent history; then the Recommend requests to load it with
and the ANN's recall@100 against exact search at the serving settings.

    python -m hanzo.loadtest.recommend_scale --out DIR [--products 200000 --users 1000000]
    hanzo serve --model-repo DIR/model_repo --data-dir DIR/data --catalog DIR/catalog.jsonl --no-demo-models
    hanzo loadtest --rpc Recommend --request-file DIR/requests.jsonl --rate 500 --duration 20
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from hanzo.server.features.formats import write_catalog
from hanzo.server.features.service import FeatureService, FeatureStoreConfig
from hanzo.server.retrieval.ann import ItemIndex
from hanzo.server.surfaces.recommend import RecommendConfig
from hanzo.server.surfaces.recommend_signals import Signals
from hanzo.training.recommend.two_tower import ItemFeatures, TwoTower
from hanzo.training.simulator.catalog import TREE

DAY_MS = 86_400_000
START = 1_767_571_200_000


def build(out: Path, products: int, users: int, seed: int = 0, log=print, reuse_data: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    if reuse_data and (out / "data").is_dir():
        shutil.rmtree(out / "model_repo", ignore_errors=True)
    else:
        shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    subs = [(root, sub) for root in TREE for sub in TREE[root]]
    sub_of = rng.integers(len(subs), size=products)
    prices = np.round(np.exp(rng.normal(3.3, 0.8, products)), 2)
    ids = [f"p{i:06d}" for i in range(products)]
    catalog = {ids[i]: {"product_id": ids[i], "title": f"product {i}", "category": list(subs[sub_of[i]]),
                        "price": float(prices[i]), "stock": 100.0} for i in range(products)}
    write_catalog(out / "catalog.jsonl", catalog.values())
    started = time.monotonic()
    model = TwoTower(products, ItemFeatures.from_catalog(ids, catalog))
    # The item embeddings of an untrained tower are random directions in 64 dimensions, a far
    # harder ANN problem than trained embeddings, which have low-rank structure; give them that
    # structure (12 latent factors, with the category's direction and noise).
    latent = rng.standard_normal((products, 12)) @ rng.standard_normal((12, 64))
    latent += 2.0 * rng.standard_normal((len(subs), 64))[sub_of] + 0.5 * rng.standard_normal((products, 64))
    items = (latent / np.linalg.norm(latent, axis=1, keepdims=True)).astype(np.float32)
    version = out / "model_repo" / "recommend" / "1"
    version.mkdir(parents=True)
    model.export_user_tower(version / "model.onnx")
    np.save(version / "items.npy", items)
    (version / "items.json").write_text(json.dumps(ids))
    log(f"model and embeddings: {time.monotonic() - started:.0f} s")
    started = time.monotonic()
    index = ItemIndex.build(items, threads=2)
    index.save(version / "index.bin")
    log(f"HNSW index over {products} items: {time.monotonic() - started:.0f} s")
    members = [np.flatnonzero(sub_of == s) for s in range(len(subs))]
    knn_index = np.stack([rng.choice(members[sub_of[i]], size=50) for i in range(products)]).astype(np.int64)
    knn_weight = np.sort(rng.random((products, 50)), axis=1)[:, ::-1].copy()
    zipf = 1.0 / np.arange(1, products + 1) ** 0.9
    popularity = np.log(zipf[rng.permutation(products)] / zipf.max())
    popularity = (popularity - popularity.min()) / np.ptp(popularity)
    followers = knn_index[:, :5]
    signals = Signals(knn_index, knn_weight, popularity, np.arange(0, 5 * products + 1, 5, dtype=np.int64),
                      followers.ravel(), rng.integers(1, 20, 5 * products).astype(float), 3)
    np.savez(version / "signals.npz", **signals.arrays())
    (version / "blend.json").write_text(json.dumps({"weights": {"two_tower": 1.0, "repeat": 1.0,
                                                                "co_visitation": 1.0, "transition": 1.0,
                                                                "popularity": 0.25}, "history": 20}))
    (version / "report.json").write_text(json.dumps({"synthetic": "speed benchmark; untrained weights"}))
    config = mc.ModelConfig(name="recommend", backend="onnxruntime", max_batch_size=64)
    config.dynamic_batching.max_queue_delay_microseconds = 0
    config.dynamic_batching.default_queue_policy.max_queue_size = 1024
    config.parameters["artifacts"].string_value = "recommend"
    (out / "model_repo" / "recommend" / "config.pbtxt").write_text(text_format.MessageToString(config))
    ef = RecommendConfig().ann_ef
    ann = ann_recall(index, items, rng, ef)
    log(f"ANN recall@100 against exact search at the serving settings (ef {ef}, M 16): {ann:.4f}")
    started = time.monotonic()
    if reuse_data and (out / "data").is_dir():
        ingested = json.loads((out / "summary.json").read_text())["events"]
    else:
        ingested = ingest_users(out / "data", users, products, rng, zipf)
        log(f"feature store: {ingested} events for {users} users in {time.monotonic() - started:.0f} s")
    with open(out / "requests.jsonl", "w") as requests:
        for n, user in enumerate(rng.choice(users, size=5000, replace=False)):
            requests.write(json.dumps({"user_id": f"u{user}", "k": 10, "request_id": f"scale-{n}"}) + "\n")
    summary = {"products": products, "users": users, "events": ingested, "ann_ef": ef, "ann_recall_at_100": ann}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def ann_recall(index: ItemIndex, items: np.ndarray, rng, ef: int, queries: int = 200) -> float:
    picked = items[rng.choice(len(items), size=queries, replace=False)]
    noisy = picked + 0.3 * rng.standard_normal(picked.shape).astype(np.float32)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    index.set_ef(ef)
    labels, _ = index.search(noisy, 100)
    exact = np.argsort(-(noisy @ items.T), axis=1)[:, :100]
    return float(np.mean([len(set(a) & set(b)) / 100 for a, b in zip(labels, exact)]))


def ingest_users(data_dir: Path, users: int, products: int, rng, zipf: np.ndarray, batch_users: int = 2000) -> int:
    service = FeatureService(FeatureStoreConfig(data_dir=data_dir, fsync="never", snapshot_every_events=10**9,
                                                max_future_seconds=10**10))
    service.open()
    weights = zipf / zipf.sum()
    total = 0
    for start in range(0, users, batch_users):
        count = min(batch_users, users - start)
        picks = rng.choice(products, size=(count, 4), p=weights)
        moments = START + np.sort(rng.integers(0, 28 * DAY_MS, size=count))
        records = []
        for j in range(count):
            user, t = f"u{start + j}", int(moments[j])
            for n in range(4):
                kind = "purchase" if n == 3 else "product_view"
                payload = {"product_id": f"p{picks[j, n]:06d}"}
                if kind == "purchase":
                    payload.update(quantity=1.0, price=10.0)
                records.append({"event_id": f"{user}-{n}", "event_type": kind, "timestamp": t + n * 60_000,
                                "user_id": user, "session_id": f"s{start + j}", "payload": payload, "context": {}})
        records.sort(key=lambda r: r["timestamp"])
        total += service.ingest_blocking(records).accepted
    service.close()
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--products", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse-data", action="store_true", help="keep DIR/data (the users' histories)")
    args = parser.parse_args()
    print(json.dumps(build(args.out, args.products, args.users, args.seed, reuse_data=args.reuse_data)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
