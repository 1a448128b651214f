"""Data drift: each model input's live distribution against the one it was trained on.

Training writes a reference beside the model (`reference.json`): per input and for the score,
bin edges at the training rows' deciles (ties merged) and at the ends of the range it saw, so
values below or above anything training saw fall in bins of their own, and the share of rows
in each bin. On the
serving path a version's `DriftWindow` only copies each scored row into a ring buffer of the
last `window` rows (one row copy, no per-feature work); at a metrics scrape the window is
binned on the reference's edges and compared:

- PSI, the population stability index: sum over bins of (live - ref) * ln(live / ref), with
  empty bins given a small floor; the usual reading is < 0.1 stable, 0.1 to 0.25 moved,
  > 0.25 shifted;
- KS on the binned distributions: the largest gap between the two cumulative shares.

A missing input (NaN) is a bin of its own, so a feature that stops arriving is drift too."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REFERENCE_FILE = "reference.json"
BINS = 10
# per input: below the training range, the ten deciles, above the range, and missing (NaN)
WIDTH = BINS + 3
FLOOR = 1e-4  # a bin's share where it is empty, so PSI stays finite


@dataclass(frozen=True)
class Reference:
    names: tuple[str, ...]  # the inputs, then "score"
    edges: tuple[np.ndarray, ...]  # per name, inner bin edges (len b - 1 for b bins)
    shares: np.ndarray  # [names, WIDTH]: the share of training rows per bin, NaN's bin last

    @classmethod
    def from_rows(cls, names: list[str], x: np.ndarray, score: np.ndarray) -> "Reference":
        columns = np.column_stack([np.asarray(x, np.float64), np.asarray(score, np.float64)])
        edges, shares = [], np.zeros((columns.shape[1], WIDTH))
        for j in range(columns.shape[1]):
            column = columns[:, j]
            finite = column[np.isfinite(column)]
            if len(finite):  # the deciles, and the training range's ends: a value never seen is a bin apart
                inner = np.unique(np.concatenate([[finite.min()], np.quantile(finite, np.linspace(0, 1, BINS + 1)[1:-1]),
                                                  [np.nextafter(finite.max(), np.inf)]]))
            else:
                inner = np.zeros(0)
            edges.append(inner)
            shares[j] = _shares(column, inner)
        return cls((*names, "score"), tuple(edges), shares)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"names": list(self.names), "edges": [e.tolist() for e in self.edges],
                                    "shares": self.shares.round(6).tolist()}))

    @classmethod
    def load(cls, path: Path) -> "Reference | None":
        """None where the version ships none (trained before references were written)."""
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            return None
        return cls(tuple(data["names"]), tuple(np.asarray(e, np.float64) for e in data["edges"]),
                   np.asarray(data["shares"], np.float64))


def _shares(column: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The share of values per bin: len(inner) + 1 bins (padded), then NaN's bin."""
    counts = np.zeros(WIDTH)
    finite = np.isfinite(column)
    binned = np.searchsorted(inner, column[finite], side="right")
    counts[:WIDTH - 1] = np.bincount(binned, minlength=WIDTH - 1)[:WIDTH - 1]
    counts[-1] = (~finite).sum()
    return counts / max(len(column), 1)


def psi(reference: np.ndarray, live: np.ndarray) -> float:
    ref, now = np.maximum(reference, FLOOR), np.maximum(live, FLOOR)
    used = (reference > 0) | (live > 0)
    return float(np.sum(((now - ref) * np.log(now / ref))[used]))


def ks(reference: np.ndarray, live: np.ndarray) -> float:
    return float(np.max(np.abs(np.cumsum(reference) - np.cumsum(live))))


class DriftWindow:
    """The last `window` rows a version scored, and their drift from its reference."""

    def __init__(self, reference: Reference, window: int = 5000) -> None:
        self.reference = reference
        self.rows = np.full((window, len(reference.names)), np.nan)
        self.seen = 0  # written and read on the event loop: the scrape is served there too

    def add(self, x: np.ndarray, score: float) -> None:
        """One scored row (the model's inputs as it got them, and its score)."""
        row = self.rows[self.seen % len(self.rows)]
        row[:-1] = x
        row[-1] = score
        self.seen += 1

    def add_rows(self, x: np.ndarray, scores: np.ndarray) -> None:
        """Scored rows [n, inputs] and their scores [n] (a ranker's list), copied in one or two
        slices of the ring."""
        total = len(x)
        n = min(total, len(self.rows))  # of a list longer than the window only its end stays
        x, scores = x[total - n:], scores[total - n:]
        start = (self.seen + total - n) % len(self.rows)
        first = min(n, len(self.rows) - start)
        self.rows[start:start + first, :-1] = x[:first]
        self.rows[start:start + first, -1] = scores[:first]
        self.rows[:n - first, :-1] = x[first:]
        self.rows[:n - first, -1] = scores[first:]
        self.seen += total

    def measure(self) -> dict[str, tuple[float, float]] | None:
        """Per input and the score: (PSI, KS) over the window; None before it holds 100 rows."""
        rows = self.rows[:min(self.seen, len(self.rows))]
        if len(rows) < 100:
            return None
        out = {}
        for j, name in enumerate(self.reference.names):
            live = _shares(rows[:, j], self.reference.edges[j])
            reference = self.reference.shares[j]
            out[name] = (psi(reference, live), ks(reference, live))
        return out


class DriftWindows:
    """One model's drift windows, one per loaded version that ships a reference: made when a
    version first scores, replaced when it is reloaded, dropped once it is unloaded."""

    def __init__(self, window: int, repository, model: str) -> None:
        self.window = window
        self.repository, self.model = repository, model  # asked which versions are still loaded
        self.versions: dict[str, DriftWindow] = {}

    def of(self, version: str, reference: Reference) -> DriftWindow:
        found = self.versions.get(version)
        if found is None or found.reference is not reference:  # a new version, or one reloaded
            found = self.versions[version] = DriftWindow(reference, self.window)
            still = {v.version_str for v in self.repository.ready_versions(self.model)}
            for gone in [v for v in self.versions if v not in still and v != version]:
                del self.versions[gone]
        return found
