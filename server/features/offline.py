"""Point-in-time joins for training: each entity row gets its features as of its own
timestamp, from the event log, computed by the same FeatureStore the server runs (the events
replayed in event-time order), so nothing from after a row's moment leaks into it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from .formats import read_catalog
from .log import replay_log
from .store import FeatureStore


@dataclass
class HistoricalFeatures:
    values: np.ndarray  # float32 [rows, width], in the order the rows were given
    missing: np.ndarray  # uint8 [rows, width]
    layout: list[tuple[str, int, int]]  # (feature, first column, width)
    sequences: dict[str, list[list[str]]]  # sequence feature -> per row, newest first


def load_log_records(data_dir: Path) -> list[dict]:
    """Every record of a server's log, in event-time order (ties in log order)."""
    records = [r for _, batch in replay_log(Path(data_dir) / "log") for r in batch]
    records.sort(key=lambda r: r["timestamp"])
    return records


def get_historical_features(records: Iterable[dict], entity: str, rows: list[tuple[str, int]],
                            feature_names: list[str], catalog: Path | list[dict] | None = None,
                            batch: int = 1000) -> HistoricalFeatures:
    """`records` in event-time order (see load_log_records); `rows` are (entity id, as-of ms)."""
    store = FeatureStore()
    if catalog is not None:
        store.load_catalog(read_catalog(catalog) if isinstance(catalog, (str, Path)) else catalog)
    features = store.check_names(entity, feature_names)
    scalar = [f.name for f in features if f.aggregation != "sequence"]
    sequence_names = [f.name for f in features if f.aggregation == "sequence"]
    order = sorted(range(len(rows)), key=lambda i: rows[i][1])
    width = sum(store.features[n].width for n in scalar)
    values = np.zeros((len(rows), max(width, 1)), np.float32)
    missing = np.zeros((len(rows), max(width, 1)), np.uint8)
    sequences = {name: [[] for _ in rows] for name in sequence_names}
    layout: list = []
    events = iter(records)
    pending: list[dict] = []
    upcoming = next(events, None)
    position = 0
    while position < len(order):
        as_of = rows[order[position]][1]
        # Apply every event at or before this row's moment, then read.
        while upcoming is not None and upcoming["timestamp"] <= as_of:
            pending.append(upcoming)
            if len(pending) >= batch:
                store.apply(pending)
                pending = []
            upcoming = next(events, None)
        if pending:
            store.apply(pending)
            pending = []
        same = [order[j] for j in range(position, len(order)) if rows[order[j]][1] == as_of]
        keys = [rows[i][0] for i in same]
        if scalar:
            got, absent, layout = store.gather(entity, keys, scalar, as_of=as_of)
            values[same] = got
            missing[same] = absent
        for name in sequence_names:
            for i, items in zip(same, store.sequences(entity, keys, name, as_of=as_of)):
                sequences[name][i] = items
        position += len(same)
    if not layout and scalar:
        layout = store.gather(entity, [], scalar)[2]
    return HistoricalFeatures(values[:, :width], missing[:, :width], layout, sequences)
