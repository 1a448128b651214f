"""The two-tower recommender: a user tower over the user's recent history and a few dense
signals (never a user-id embedding, so new users and anonymous sessions are served from what
they did), an item tower over the product's id and attributes, trained with in-batch
negatives and a popularity (logQ) correction."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from hanzo.server.surfaces.recommend_inputs import DENSE, HISTORY, UserInputs

DIM = 64


@dataclass
class ItemFeatures:
    """Per item (row = item index): category ids (0 unknown) and a price bucket (0 unknown)."""
    root: np.ndarray
    sub: np.ndarray
    price_bucket: np.ndarray

    @classmethod
    def empty(cls, n: int) -> "ItemFeatures":
        zeros = np.zeros(n, dtype=np.int64)
        return cls(zeros, zeros.copy(), zeros.copy())

    @classmethod
    def from_catalog(cls, product_ids: list[str], catalog: dict[str, dict]) -> "ItemFeatures":
        """Root and second-level categories by first appearance (1..), price deciles (1..10)."""
        roots: dict[str, int] = {}
        subs: dict[tuple, int] = {}
        out = cls.empty(len(product_ids))
        prices = np.array([float((catalog.get(p) or {}).get("price") or np.nan) for p in product_ids])
        known = ~np.isnan(prices)
        if known.any():
            edges = np.quantile(prices[known], np.linspace(0, 1, 11)[1:-1])
            out.price_bucket[known] = np.searchsorted(edges, prices[known]) + 1
        for i, product in enumerate(product_ids):
            category = (catalog.get(product) or {}).get("category") or []
            if category:
                out.root[i] = roots.setdefault(category[0], len(roots) + 1)
                if len(category) > 1:
                    out.sub[i] = subs.setdefault(tuple(category[:2]), len(subs) + 1)
        return out


class UserTower(nn.Module):
    def __init__(self, n_items: int, dim: int = DIM) -> None:
        super().__init__()
        self.bought = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.viewed = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.bought_position = nn.Parameter(torch.zeros(HISTORY))
        self.viewed_position = nn.Parameter(torch.zeros(HISTORY))
        self.mix = nn.Sequential(nn.Linear(2 * dim + DENSE, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))

    @staticmethod
    def _pool(table: nn.Embedding, position: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        present = (items > 0).float()
        # attention by recency, over the items that are there (all-padding rows pool to 0)
        weights = torch.softmax(position + (present - 1.0) * 1e4, dim=1) * present
        return (weights.unsqueeze(-1) * table(items)).sum(1)

    def forward(self, bought: torch.Tensor, viewed: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([self._pool(self.bought, self.bought_position, bought),
                            self._pool(self.viewed, self.viewed_position, viewed), dense], dim=1)
        return nn.functional.normalize(self.mix(pooled), dim=-1)


class ItemTower(nn.Module):
    def __init__(self, n_items: int, n_roots: int, n_subs: int, dim: int = DIM) -> None:
        super().__init__()
        self.item = nn.Embedding(n_items + 1, dim)  # row 0: a product the model has not seen
        self.root = nn.Embedding(n_roots + 1, dim)
        self.sub = nn.Embedding(n_subs + 1, dim)
        self.price = nn.Embedding(11, dim)

    def forward(self, item: torch.Tensor, root: torch.Tensor, sub: torch.Tensor, price: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.item(item) + self.root(root) + self.sub(sub) + self.price(price), dim=-1)


@dataclass
class TrainingConfig:
    epochs: int = 8
    batch: int = 512
    learning_rate: float = 3e-3
    temperature: float = 0.07
    seed: int = 0


class TwoTower:
    def __init__(self, n_items: int, features: ItemFeatures) -> None:
        self.n_items = n_items
        self.features = features
        self.user = UserTower(n_items)
        self.item = ItemTower(n_items, int(features.root.max()) + 1, int(features.sub.max()) + 1)

    def _item_inputs(self, items: torch.Tensor):
        f = self.features
        return (items + 1, torch.as_tensor(f.root)[items], torch.as_tensor(f.sub)[items],
                torch.as_tensor(f.price_bucket)[items])

    def fit(self, inputs: UserInputs, positives: np.ndarray, config: TrainingConfig, log=print) -> "TwoTower":
        torch.manual_seed(config.seed)
        rng = np.random.default_rng(config.seed)
        bought, viewed = torch.as_tensor(inputs.bought), torch.as_tensor(inputs.viewed)
        dense, targets = torch.as_tensor(inputs.dense), torch.as_tensor(positives)
        share = np.bincount(positives, minlength=self.n_items) + 1.0
        log_q = torch.as_tensor(np.log(share / share.sum()), dtype=torch.float32)
        params = list(self.user.parameters()) + list(self.item.parameters())
        optimizer = torch.optim.Adam(params, lr=config.learning_rate)
        for epoch in range(config.epochs):
            order = torch.as_tensor(rng.permutation(len(targets)))
            total = 0.0
            for start in range(0, len(order), config.batch):
                rows = order[start:start + config.batch]
                users = self.user(bought[rows], viewed[rows], dense[rows])
                items = targets[rows]
                logits = users @ self.item(*self._item_inputs(items)).T / config.temperature - log_q[items]
                # The same item twice in a batch is not a negative of itself.
                clash = (items.unsqueeze(0) == items.unsqueeze(1)) & ~torch.eye(len(rows), dtype=torch.bool)
                loss = nn.functional.cross_entropy(logits.masked_fill(clash, -1e9), torch.arange(len(rows)))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(rows)
            log(f"epoch {epoch + 1}/{config.epochs}: loss {total / len(targets):.4f}")
        return self

    @torch.no_grad()
    def item_embeddings(self) -> np.ndarray:
        return self.item(*self._item_inputs(torch.arange(self.n_items))).numpy().astype(np.float32)

    @torch.no_grad()
    def user_embeddings(self, inputs: UserInputs) -> np.ndarray:
        self.user.eval()
        out = self.user(torch.as_tensor(inputs.bought), torch.as_tensor(inputs.viewed), torch.as_tensor(inputs.dense))
        return out.numpy().astype(np.float32)

    def export_user_tower(self, path) -> None:
        """ONNX: bought, viewed int64 [B, HISTORY], dense float32 [B, DENSE] -> embedding [B, DIM]."""
        self.user.eval()
        example = (torch.zeros(1, HISTORY, dtype=torch.int64), torch.zeros(1, HISTORY, dtype=torch.int64),
                   torch.zeros(1, DENSE))
        # The TorchScript exporter: the torch.export one needs onnxscript, one more dependency
        # for a graph this simple.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self._export(path, example)

    def _export(self, path, example) -> None:
        torch.onnx.export(self.user, example, str(path), input_names=["bought", "viewed", "dense"],
                          output_names=["embedding"], opset_version=17, dynamo=False,
                          dynamic_axes={"bought": {0: "batch"}, "viewed": {0: "batch"}, "dense": {0: "batch"},
                                        "embedding": {0: "batch"}})
