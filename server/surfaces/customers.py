"""ScoreCustomers: each customer's outlook now (the chance of buying again within the horizon,
the purchase days and spend expected, the churn risk band and the reasons) from the learned
model the nightly `hanzo score-customers --save-model` keeps, over the lifetime features the
feature store holds for the customer. The model folder is reloaded when the nightly run
rewrites it, so no restart is needed."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..customers.lifetime import LifetimeFeatures
from ..customers.model import CustomerModel
from ..customers.scores import score_learned
from ..customers.store_lifetime import READ_CHUNK, STORE_FEATURES, from_block
from ..features.service import FeatureService
from .reloading import ReloadingFile


# Customers from which a request is scored off the event loop (a thread): a few answer faster
# on it than the hand-over costs.
OFF_LOOP = 50


@dataclass
class CustomersConfig:
    model: str = ""  # the folder `hanzo score-customers --save-model` writes; empty: ScoreCustomers unavailable

    def model_file(self) -> str:
        return str(Path(self.model) / "model.json") if self.model else ""


@dataclass
class CustomerAnswer:
    known: np.ndarray  # bool [asked]
    p_buy_again: np.ndarray  # float [asked], 0 where unknown
    expected_purchases: np.ndarray
    expected_spend: np.ndarray
    risk_band: list[str]
    reasons: list[list[str]]
    model_version: str


class CustomerScorer:
    def __init__(self, features: FeatureService, config: CustomersConfig | None = None) -> None:
        self.config = config or CustomersConfig()
        self.features = features
        self._model = ReloadingFile(self.config.model_file(), lambda path: CustomerModel.load(path.parent),
                                    "customer model", "run `hanzo score-customers --save-model DIR` and set "
                                                      "[customers] model = DIR")

    async def score(self, keys: list[str], horizon_days: int) -> CustomerAnswer:
        """`keys`: the store's user keys (the merchant's scope applied)."""
        model = self._model.current()
        names = list(STORE_FEATURES)
        # the first read at the store's clock as it finds it (a Redis replica learns the shared
        # clock with it), the rest at that same moment
        blocks = [await self.features.read("user", keys[:READ_CHUNK], names)]
        as_of = self.features.store.watermark
        blocks += [await self.features.read("user", keys[i:i + READ_CHUNK], names, as_of)
                   for i in range(READ_CHUNK, len(keys), READ_CHUNK)]
        lifetime, known = from_block(keys, np.concatenate([b.values for b in blocks]),
                                     np.concatenate([b.missing for b in blocks]), as_of)
        if known.sum() >= OFF_LOOP:  # the trees' kernels let go of the GIL: other calls go on meanwhile
            return await asyncio.to_thread(_answer, model, lifetime, known, horizon_days)
        return _answer(model, lifetime, known, horizon_days)


def _answer(model: CustomerModel, lifetime: LifetimeFeatures, known: np.ndarray, horizon_days: int) -> CustomerAnswer:
    n = len(known)
    p, purchases, spend = np.zeros(n), np.zeros(n), np.zeros(n)
    bands, said = [""] * n, [[] for _ in range(n)]
    if known.any():
        scores = score_learned(lifetime, model, horizon_days)
        p[known], purchases[known], spend[known] = scores.p_buy_again, scores.expected_purchases, scores.expected_spend
        for row, band, text in zip(np.flatnonzero(known).tolist(), scores.risk_band, scores.reasons):
            bands[row], said[row] = band, text
    return CustomerAnswer(known, p, purchases, spend, bands, said, model.trained_as_of)
