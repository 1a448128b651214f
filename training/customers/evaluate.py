"""Who buys again, how often and for how much: the customer-base models judged on later weeks.

The events are split by time: each customer's summary is made from the purchases up to
`--split` (the calibration weeks), and the models are judged on the purchases in the
`--horizon-days` after it (customers first seen after the split are left out). Judged per
customer:
- AUC of "buys again within the horizon";
- the mean absolute error of the number of purchase days;
- the mean absolute error of the spend.
Each figure has a 95% bootstrap interval over customers (fixed seed).

The learned model (training/customers/learned.py: trees correcting BG/NBD, trained on the
history before the split alone) beside the BG/NBD + Gamma-Gamma baseline and:
- recency: days since the last purchase, fewer meaning likelier;
- rate carried forward: the customer's purchase days per day so far, times the horizon, and
  their spend rate likewise.

    python -m hanzo.training.customers.evaluate --events ../shared/data/cdnow/events.jsonl.gz \\
        --split 1997-05-20 --horizon-days 133 --out loadtest/reports/customers-cdnow-split.json

`--tune` adds the tree settings the learned model's were chosen from, each as its own row: run it
at an earlier split than the one reported (the settings were chosen at 1997-04-15, 91 days).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hanzo.server.customers.bgnbd import fit_bgnbd
from hanzo.server.customers.gamma_gamma import fit_gamma_gamma
from hanzo.server.customers.purchases import read_purchases
from hanzo.server.customers.rfm import Summary, summarize
from hanzo.server.customers.lifetime import lifetime_features
from hanzo.training.metrics import bootstrap_statistic

from .learned import TreeSettings, fit_customer_model
from .outcomes import outcomes

BOOTSTRAP = 1000
SEED = 7


def with_interval(metric, *columns, seed: int = SEED) -> dict:
    """metric(*columns) with its percentile bootstrap interval over customers."""
    low, high = bootstrap_statistic(lambda rows: metric(*(c[rows] for c in columns)), len(columns[0]), seed,
                                    BOOTSTRAP)
    return {"value": metric(*columns), "low": low, "high": high}


def auc(score: np.ndarray, label: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(label, score))


def paired_differences(ours: tuple, theirs: tuple, again, bought, spent) -> dict:
    """Each figure's difference on the same resampled customers: an interval excluding 0 says
    the ordering would hold on another draw of customers."""
    def difference(metric):
        return lambda y, *pair: metric(pair[0], y) - metric(pair[1], y)

    mae = lambda p, y: float(np.mean(np.abs(p - y)))  # noqa: E731
    return {"auc_buys_again": with_interval(difference(lambda p, y: auc(p, y)), again, ours[0], theirs[0]),
            "purchases_mae": with_interval(difference(mae), bought, ours[1], theirs[1]),
            "spend_mae": with_interval(difference(mae), spent, ours[2], theirs[2])}


GRID = [TreeSettings(rounds=r, max_depth=d) for r in (100, 300) for d in (2, 3)]


def learned_predictions(users, days, spend, summary: Summary, cut: int, horizon_days: int,
                        settings: TreeSettings) -> tuple:
    model = fit_customer_model(users, days, spend, cut, horizon_days, settings)
    outlook = model.predict(lifetime_features(users, days, spend, cut), horizon_days)
    return outlook.p_buy_again, outlook.expected_purchases, outlook.expected_spend


def evaluate(events: Path, split: str, horizon_days: int, tune: bool = False) -> dict:
    users, days, spend = read_purchases(events)
    cut = int(np.datetime64(split, "D").astype(np.int64))
    summary = summarize(users, days, spend, cut)
    bought, spent = outcomes(users, days, spend, summary, cut, cut + horizon_days)
    again = bought > 0
    model, spend_model = fit_bgnbd(summary), fit_gamma_gamma(summary)
    expected = model.expected_purchases(summary, horizon_days)
    per_purchase = spend_model.expected_spend(summary)
    total_spend_rate = (summary.monetary * summary.frequency + summary.first_spend) / np.maximum(summary.age, 1)
    predictions = {
        "learned": learned_predictions(users, days, spend, summary, cut, horizon_days, TreeSettings()),
        "bgnbd": (model.p_any_purchase(summary, horizon_days), expected, expected * per_purchase),
        "recency": (-(summary.age - summary.recency), None, None),
        "rate_carried_forward": (summary.frequency / np.maximum(summary.age, 1),
                                 summary.frequency / np.maximum(summary.age, 1) * horizon_days,
                                 total_spend_rate * horizon_days),
        "zero": (None, np.zeros(len(summary)), np.zeros(len(summary))),
    }
    for settings in GRID if tune else ():
        predictions[f"learned rounds={settings.rounds} depth={settings.max_depth}"] = learned_predictions(
            users, days, spend, summary, cut, horizon_days, settings)
    mae = lambda p, y: float(np.mean(np.abs(p - y)))  # noqa: E731
    results = {}
    for name, (score, count, money) in predictions.items():
        results[name] = {
            "auc_buys_again": with_interval(auc, score, again) if score is not None else None,
            "purchases_mae": with_interval(mae, count, bought) if count is not None else None,
            "spend_mae": with_interval(mae, money, spent) if money is not None else None}
    results["learned_minus_bgnbd"] = paired_differences(predictions["learned"], predictions["bgnbd"], again, bought,
                                                        spent)
    return {"events": str(events), "split": split, "horizon_days": horizon_days, "customers": len(summary),
            "bought_again_share": float(again.mean()), "bootstrap": BOOTSTRAP, "seed": SEED,
            "bgnbd": {"r": model.r, "alpha": model.alpha, "a": model.a, "b": model.b},
            "gamma_gamma": {"p": spend_model.p, "q": spend_model.q, "v": spend_model.v},
            "learned_settings": TreeSettings().__dict__, "results": results}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=Path, required=True)
    parser.add_argument("--split", required=True, help="the last calibration day, YYYY-MM-DD")
    parser.add_argument("--horizon-days", type=int, required=True)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--tune", action="store_true", help="also every setting of the learned model's grid")
    args = parser.parse_args()
    report = evaluate(args.events, args.split, args.horizon_days, args.tune)
    from hanzo.loadtest.reports import print_report

    print_report(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
