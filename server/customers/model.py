"""The learned customer model, served without its trainer's library.

Two gradient-boosted tree ensembles correct the customer-base models instead of replacing them:
each starts every customer from BG/NBD's expectation at the asked horizon (purchase days; times
Gamma-Gamma's spend per purchase day for spend) and adds, in log space, what the customer's
lifetime features say beyond it. Starting from BG/NBD is what lets a model trained on a shorter
horizon than the one asked answer for it: the horizon lives in the starting point, the trees
only in the correction. The chance of at least one purchase day is the zero of a negative
binomial around the corrected expectation, its shape fitted on the training cut; it ranks as the
expectation does.

Saved as a folder: purchases.npz and spend.npz (TreeEnsemble arrays) and model.json."""
from __future__ import annotations

import hashlib
import io
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..models.tree_ensemble import TreeEnsemble
from .bgnbd import BGNBD
from .gamma_gamma import GammaGamma
from .lifetime import FEATURES, LifetimeFeatures, summary_of
from .rfm import Summary

# What the trees read: the lifetime features, then two BG/NBD readings that do not depend on the
# horizon asked.
INPUTS = (*FEATURES, "chance_still_a_customer", "expected_days_next_30")
_FLOOR = 1e-6  # keeps log() finite for customers BG/NBD gives nothing
ARRAYS = ("purchases.npz", "spend.npz")  # the trees, in the order CustomerModel holds them


@dataclass
class Outlook:
    p_buy_again: np.ndarray
    expected_purchases: np.ndarray
    expected_spend: np.ndarray
    contributions: np.ndarray | None  # [customers, len(INPUTS)] of the purchase days' log-correction
    inputs: np.ndarray  # [customers, len(INPUTS)]: what the trees read


@dataclass(eq=False)
class CustomerModel:
    bgnbd: BGNBD
    gamma_gamma: GammaGamma
    purchases: TreeEnsemble
    spend: TreeEnsemble
    shape: float  # negative binomial shape of the purchase-day count
    trained_as_of: str  # YYYY-MM-DD: the last day of the history it learned from
    trained_horizon_days: int

    def inputs(self, lifetime: LifetimeFeatures, summary: Summary | None = None) -> np.ndarray:
        summary = summary_of(lifetime) if summary is None else summary
        return np.column_stack([lifetime.matrix, self.bgnbd.p_alive(summary),
                                self.bgnbd.expected_purchases(summary, 30.0)])

    def starting_points(self, lifetime: LifetimeFeatures, horizon_days: float,
                        summary: Summary | None = None) -> tuple[np.ndarray, np.ndarray]:
        """BG/NBD's log expected purchase days and log expected spend over the horizon."""
        summary = summary_of(lifetime) if summary is None else summary
        days = self.bgnbd.expected_purchases(summary, horizon_days)
        money = days * self.gamma_gamma.expected_spend(summary)
        return np.log(np.maximum(days, _FLOOR)), np.log(np.maximum(money, _FLOOR))

    def predict(self, lifetime: LifetimeFeatures, horizon_days: float, explain: bool = False,
                summary: Summary | None = None) -> Outlook:
        summary = summary_of(lifetime) if summary is None else summary
        X = self.inputs(lifetime, summary)
        start_days, start_money = self.starting_points(lifetime, horizon_days, summary)
        expected = np.exp(start_days + self.purchases.margin(X))
        money = np.exp(start_money + self.spend.margin(X))
        p = 1.0 - (1.0 + expected / self.shape) ** -self.shape
        contributions = self.purchases.contributions(X)[:, :-1] if explain else None
        return Outlook(p, expected, money, contributions, X)

    def save(self, folder: str | Path) -> None:
        """Written whole beside `folder`, then swapped in by renames, so a server reloading it
        never reads half a model; model.json holds the digests of the arrays it goes with."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        self.purchases.save(staging / "purchases.npz")
        self.spend.save(staging / "spend.npz")
        (staging / "model.json").write_text(json.dumps({
            "bgnbd": asdict(self.bgnbd), "gamma_gamma": asdict(self.gamma_gamma), "shape": self.shape,
            "trained_as_of": self.trained_as_of, "trained_horizon_days": self.trained_horizon_days,
            "inputs": list(INPUTS), "digests": {name: _digest(staging / name) for name in ARRAYS}}, indent=1))
        retired = folder.with_name(f".{folder.name}.old") if folder.exists() else None
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)
            folder.rename(retired)
        staging.rename(folder)
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)

    @classmethod
    def load(cls, folder: str | Path) -> CustomerModel:
        folder = Path(folder)
        meta = json.loads((folder / "model.json").read_text())
        if meta.get("inputs") != list(INPUTS):
            raise ValueError(f"{folder}: the model reads {meta.get('inputs')}, this server computes {list(INPUTS)}")
        blobs = {name: (folder / name).read_bytes() for name in ARRAYS}
        for name, blob in blobs.items():
            if hashlib.sha256(blob).hexdigest() != meta.get("digests", {}).get(name):
                raise ValueError(f"{folder}: {name} is not the one model.json was written with")
        purchases, spend = (TreeEnsemble.load(io.BytesIO(blobs[name])) for name in ARRAYS)
        return cls(BGNBD(**meta["bgnbd"]), GammaGamma(**meta["gamma_gamma"]), purchases, spend,
                   float(meta["shape"]), str(meta["trained_as_of"]), int(meta["trained_horizon_days"]))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
