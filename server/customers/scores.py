"""Each customer's outlook from the customer-base models: the chance of buying again within the
horizon, the purchase days and spend expected over it, a churn risk band, and the reasons a
person can read (what in the customer's own history drives the score).

The risk band cuts the chance of buying again: high under HIGH_RISK, medium under
MEDIUM_RISK, low above."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bgnbd import BGNBD
from .gamma_gamma import GammaGamma
from .rfm import Summary

HIGH_RISK, MEDIUM_RISK = 0.3, 0.6


@dataclass
class Scores:
    p_buy_again: np.ndarray
    expected_purchases: np.ndarray
    expected_spend: np.ndarray
    risk_band: np.ndarray  # object: "high" | "medium" | "low"
    reasons: list[str]


def score(summary: Summary, model: BGNBD, spend: GammaGamma, horizon_days: float) -> Scores:
    p = model.p_any_purchase(summary, horizon_days)
    expected = model.expected_purchases(summary, horizon_days)
    money = expected * spend.expected_spend(summary)
    band = np.where(p < HIGH_RISK, "high", np.where(p < MEDIUM_RISK, "medium", "low")).astype(object)
    return Scores(p, expected, money, band, reasons(summary, model.p_alive(summary)))


def reasons(summary: Summary, alive: np.ndarray) -> list[str]:
    """Up to three reasons per customer, most telling first, in plain words."""
    silent = summary.age - summary.recency
    gap = np.divide(summary.recency, summary.frequency, out=np.full(len(summary), np.nan),
                    where=summary.frequency > 0)
    out = []
    for i in range(len(summary)):
        said = []
        if summary.frequency[i] == 0:
            said.append(f"one purchase day only, {silent[i]:.0f} days ago")
        else:
            usual = gap[i]
            if silent[i] > 2 * usual:
                said.append(f"silent {silent[i]:.0f} days, {silent[i] / usual:.1f}x the usual gap of {usual:.0f}")
            else:
                said.append(f"last bought {silent[i]:.0f} days ago, within the usual gap of {usual:.0f}")
            said.append(f"{summary.frequency[i] + 1:.0f} purchase days in {summary.age[i]:.0f}")
        if alive[i] < 0.5:
            said.append(f"chance still a customer {alive[i]:.2f}")
        out.append("; ".join(said[:3]))
    return out
