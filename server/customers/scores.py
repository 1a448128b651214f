"""Each customer's outlook: the chance of buying again within the horizon, the purchase days and
spend expected over it, a churn risk band, and the reasons a person can read (what in the
customer's own history drives the score).

Two sources: the learned model (model.CustomerModel), whose reasons add the features that moved
its correction most, and BG/NBD with Gamma-Gamma alone. The risk band cuts the chance of buying
again: high under HIGH_RISK, medium under MEDIUM_RISK, low above."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bgnbd import BGNBD
from .gamma_gamma import GammaGamma
from .lifetime import LifetimeFeatures, summary_of
from .model import INPUTS, CustomerModel
from .rfm import Summary

HIGH_RISK, MEDIUM_RISK = 0.3, 0.6
# A feature is named as a reason when it moves the expected purchase days by at least this
# fraction; smaller pushes are noise to a reader.
_TELLING = 0.05


@dataclass
class Scores:
    p_buy_again: np.ndarray
    expected_purchases: np.ndarray
    expected_spend: np.ndarray
    risk_band: np.ndarray  # object: "high" | "medium" | "low"
    reasons: list[list[str]]  # each customer's, most telling first


def risk_band(p_buy_again: np.ndarray) -> np.ndarray:
    return np.where(p_buy_again < HIGH_RISK, "high", np.where(p_buy_again < MEDIUM_RISK, "medium", "low")).astype(object)


def score_bgnbd(summary: Summary, model: BGNBD, spend: GammaGamma, horizon_days: float) -> Scores:
    p = model.p_any_purchase(summary, horizon_days)
    expected = model.expected_purchases(summary, horizon_days)
    money = expected * spend.expected_spend(summary)
    return Scores(p, expected, money, risk_band(p), reasons(summary, model.p_alive(summary)))


def score_learned(lifetime: LifetimeFeatures, model: CustomerModel, horizon_days: float,
                  explain: bool = True) -> Scores:
    summary = summary_of(lifetime)
    outlook = model.predict(lifetime, horizon_days, explain=explain, summary=summary)
    alive = outlook.inputs[:, INPUTS.index("chance_still_a_customer")]  # BG/NBD's, as the trees read it
    said = reasons(summary, alive, outlook.contributions, outlook.inputs)
    return Scores(outlook.p_buy_again, outlook.expected_purchases, outlook.expected_spend,
                  risk_band(outlook.p_buy_again), said)


def reasons(summary: Summary, alive: np.ndarray, contributions: np.ndarray | None = None,
            inputs: np.ndarray | None = None) -> list[list[str]]:
    """Up to three reasons per customer, most telling first, in plain words: the history as the
    customer-base models read it, then the features the learned model leaned on."""
    silent = summary.age - summary.recency
    gap = np.divide(summary.recency, summary.frequency, out=np.full(len(summary), np.nan),
                    where=summary.frequency > 0)
    if contributions is not None:
        order = np.argsort(-np.abs(contributions), axis=1)[:, :2]
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
        doubtful = alive[i] < 0.5
        if doubtful:
            said.append(f"chance still a customer {alive[i]:.2f}")
        if contributions is not None:
            for j in order[i]:
                push = contributions[i, j]
                if abs(np.expm1(push)) >= _TELLING and not (doubtful and INPUTS[j] == "chance_still_a_customer"):
                    said.append(f"{INPUTS[j].replace('_', ' ')} {inputs[i, j]:.4g} "
                                f"{'raises' if push > 0 else 'lowers'} expected purchases {abs(np.expm1(push)):.0%}")
        elif summary.frequency[i] > 0:
            said.append(f"{summary.frequency[i] + 1:.0f} purchase days in {summary.age[i]:.0f}")
        out.append(said[:3])
    return out
