"""The neural half of the fraud ensemble: a small MLP over the same input vector as the trees,
its preprocessing inside the graph (signed log, standardisation, unknown values as zero plus a
missing flag), so the server feeds both models the one raw vector."""
from __future__ import annotations

import copy

import warnings

import numpy as np
import torch
from torch import nn

from .metrics import average_precision


def signed_log(x: torch.Tensor) -> torch.Tensor:
    """Counts, amounts and seconds span orders of magnitude; their log keeps a few large
    values from dominating the standardisation."""
    return torch.sign(x) * torch.log1p(torch.abs(x))


class FraudMLP(nn.Module):
    def __init__(self, center: np.ndarray, scale: np.ndarray, hidden: int = 64) -> None:
        super().__init__()
        n = len(center)
        self.register_buffer("center", torch.as_tensor(center, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))
        self.net = nn.Sequential(nn.Linear(2 * n, hidden), nn.ReLU(), nn.Dropout(0.1),
                                 nn.Linear(hidden, hidden // 2), nn.ReLU(), nn.Linear(hidden // 2, 1))

    @classmethod
    def for_data(cls, x: np.ndarray, hidden: int = 64) -> "FraudMLP":
        """Standardisation fitted on the training rows' known values."""
        logged = np.sign(x) * np.log1p(np.abs(x))
        with warnings.catch_warnings():  # a column no row knows (no accounts in a processor's data)
            warnings.simplefilter("ignore", RuntimeWarning)
            center = np.nan_to_num(np.nanmean(logged, axis=0)) if len(x) else np.zeros(x.shape[1])
            scale = np.nan_to_num(np.nanstd(logged, axis=0), nan=1.0) if len(x) else np.ones(x.shape[1])
        return cls(center.astype(np.float32), np.where(scale > 1e-6, scale, 1.0).astype(np.float32), hidden)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        unknown = torch.isnan(x)
        z = (signed_log(torch.where(unknown, torch.zeros_like(x), x)) - self.center) / self.scale
        z = torch.where(unknown, torch.zeros_like(z), z)
        return self.net(torch.cat([z, unknown.float()], dim=1)).squeeze(1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features float32 [N, F] (NaN: unknown) -> fraud probability [N]."""
        return torch.sigmoid(self.logits(features))


def fit_mlp(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, seed: int = 0, epochs: int = 40,
            batch: int = 256, lr: float = 1e-3, log=print) -> tuple[FraudMLP, dict]:
    """Binary cross-entropy, early-stopped on the validation rows' precision-recall area."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = FraudMLP.for_data(x)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    features, labels = torch.from_numpy(x), torch.from_numpy(y.astype(np.float32))
    best, best_state, history, stale = -1.0, copy.deepcopy(model.state_dict()), [], 0
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(x))
        for first in range(0, len(order), batch):
            pick = torch.from_numpy(order[first:first + batch])
            loss = nn.functional.binary_cross_entropy_with_logits(model.logits(features[pick]), labels[pick])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        score = average_precision(y_val, predict(model, x_val))
        history.append({"epoch": epoch + 1, "validation_ap": score})
        if score > best:
            best, best_state, stale = score, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= 8:
                break
    model.load_state_dict(best_state)
    model.eval()
    log(f"mlp: validation PR-AUC {best:.4f} after {len(history)} epochs")
    return model, {"validation_ap": best, "epochs": len(history)}


@torch.no_grad()
def predict(model: FraudMLP, x: np.ndarray) -> np.ndarray:
    model.eval()
    return model(torch.from_numpy(np.ascontiguousarray(x, np.float32))).numpy().astype(np.float64)
