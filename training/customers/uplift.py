"""Who to send a win-back coupon: an uplift model beside "the highest churn risk" and "at random",
on the win-back simulator's randomised experiment (training/simulator/winback.py).

The lapsing shoppers of the experiment are split by shopper: half to fit, half judged. The
features come from the history alone (up to the day before the decision): the customer summary
(server/customers/rfm), BG/NBD fitted on every shopper's history (chance alive, chance of buying
and purchases expected over the window), and what the events show of the baskets: their value,
lines, the price level of what was picked and the share of purchase days with a sale-priced
line. Two learners on xgboost: two models (the outcome in
the window, one model per arm; uplift = the difference) and the transformed outcome (a
regression on y * (t / e - (1 - t) / (1 - e)), whose mean is the uplift). The learner and its
number of trees are chosen by the Qini coefficient of out-of-fold predictions over the fitting
half (the experiment's outcomes, never the truth), refitted on the whole half and judged. Two
uplift models are made so: "uplift_model" of purchase days (the issue's measure; Poisson two
models) and "uplift_model_profit" of the window's profit after the coupon (what a campaign
pays by; squared error), since the shoppers a coupon adds the most purchases to need not be
those it pays the most to send it to.

Judged, per ranking (contact the top 10% / 30%):
- incremental purchase days per 1,000 offers: from the experiment (treated minus control mean
  among those ranked in) and from the simulator's truth (the mean of each shopper's purchases
  with the coupon minus without, both played from the same draws);
- profit per 1,000 offers: margin (price minus the catalog's cost) of the window's orders, less
  the coupon's value for each order that used it, treated minus control (truth: with minus
  without);
- the Qini coefficient: the area between the curve of incremental purchases against the share
  contacted and the straight line of contacting at random, per shopper of the judged half.
Each with a 95% bootstrap interval over judged shoppers (fixed seed), and each uplift model's
difference from each baseline on the same resamples. "oracle" ranks by the truth's expected
uplift: the ceiling, not a contender.

    python -m hanzo.training.customers.uplift --out loadtest/reports/winback-uplift.json
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import xgboost

from hanzo.server.customers.bgnbd import fit_bgnbd
from hanzo.server.customers.purchases import read_purchases
from hanzo.server.customers.rfm import summarize
from hanzo.server.features.formats import read_catalog, read_records
from hanzo.training.metrics import bootstrap_statistic

SEED = 7
BOOTSTRAP = 1000
TOPS = (0.1, 0.3)
DAY_MS = 86_400_000
XGB = {"eta": 0.03, "max_depth": 3, "min_child_weight": 20.0, "subsample": 0.8, "colsample_bytree": 0.8,
       "lambda": 5.0, "tree_method": "hist", "nthread": 2}


@dataclass
class Experiment:
    user_ids: np.ndarray  # object
    treated: np.ndarray  # bool
    x: np.ndarray  # [shoppers, features]
    names: list[str]
    purchases: np.ndarray  # purchase days in the window, as observed
    profit: np.ndarray  # margin of the window's orders less the coupons used, as observed
    churn_risk: np.ndarray  # 1 - P(any purchase in the window) from BG/NBD
    window_days: int


def _lines(events: Path, index: dict[str, int]) -> dict[str, np.ndarray]:
    """The purchase lines and coupon orders of the experiment's shoppers."""
    rows, days, products, prices, quantities, coupon_rows, coupon_days = [], [], [], [], [], [], []
    for record in read_records(events):
        row = index.get(record.get("user_id"), -1)
        if row < 0:
            continue
        payload = record.get("payload") or {}
        if record["event_type"] == "purchase":
            rows.append(row)
            days.append(record["timestamp"] // DAY_MS)
            products.append(payload["product_id"])
            prices.append(float(payload.get("price", 0.0)))
            quantities.append(float(payload.get("quantity", 1.0)))
        elif record["event_type"] == "order" and (record.get("context") or {}).get("coupon"):
            coupon_rows.append(row)
            coupon_days.append(record["timestamp"] // DAY_MS)
    return {"row": np.array(rows, np.int64), "day": np.array(days, np.int64), "product": np.array(products, object),
            "price": np.array(prices), "quantity": np.array(quantities),
            "coupon_row": np.array(coupon_rows, np.int64), "coupon_day": np.array(coupon_days, np.int64)}


def _basket_features(lines: dict[str, np.ndarray], catalog: dict[str, dict], n: int, end: int) -> dict:
    """Per shopper, from the history's lines: the price level picked, and how much of the buying
    was at sale prices (a line below the catalog's list price)."""
    past = lines["day"] <= end
    row, day = lines["row"][past], lines["day"][past]
    listed = np.array([catalog[p]["price"] for p in lines["product"][past]])
    discounted = (lines["price"][past] < listed - 0.005).astype(float)
    key = row * (1 << 32) + day
    keys, which = np.unique(key, return_inverse=True)
    day_discounted = np.zeros(len(keys))
    np.maximum.at(day_discounted, which, discounted)
    day_row = (keys >> 32).astype(np.int64)
    days_bought = np.bincount(day_row, minlength=n)
    n_lines = np.bincount(row, minlength=n)
    safe = np.maximum(n_lines, 1)
    return {"sale_day_share": np.bincount(day_row, day_discounted, n) / np.maximum(days_bought, 1),
            "sale_line_share": np.bincount(row, discounted, n) / safe,
            "log_list_price": np.bincount(row, np.log(listed), n) / safe,
            "lines_per_day": n_lines / np.maximum(days_bought, 1)}


def _outcomes(lines: dict[str, np.ndarray], catalog: dict[str, dict], n: int, end: int, window_days: int,
              coupon_value: float) -> tuple[np.ndarray, np.ndarray]:
    """Per shopper: purchase days in the window, and margin less the coupons used."""
    inside = (lines["day"] > end) & (lines["day"] <= end + window_days)
    row = lines["row"][inside]
    pairs = np.unique(row * (1 << 32) + lines["day"][inside])
    purchases = np.bincount((pairs >> 32).astype(np.int64), minlength=n).astype(float)
    cost = np.array([catalog[p].get("cost", 0.0) for p in lines["product"][inside]])
    margin = np.bincount(row, lines["quantity"][inside] * (lines["price"][inside] - cost), n)
    used = (lines["coupon_day"] > end) & (lines["coupon_day"] <= end + window_days)
    return purchases, margin - coupon_value * np.bincount(lines["coupon_row"][used], minlength=n)


def load_experiment(world: Path) -> Experiment:
    """The experiment's shoppers, their features from the history and their observed outcomes."""
    world = Path(world)
    experiment = json.loads((world / "experiment.json").read_text())
    catalog = {p["product_id"]: p for p in read_catalog(world / "catalog.jsonl")}
    user_ids = np.array(sorted(experiment["arms"]), object)
    index = {u: i for i, u in enumerate(user_ids.tolist())}
    n, window_days = len(user_ids), int(experiment["window_days"])
    end = int(np.datetime64(experiment["decision_date"], "D").astype(np.int64)) - 1
    users, days, spend = read_purchases(world / "events.jsonl.gz")
    summary = summarize(users, days, spend, end)  # every shopper's history: what BG/NBD is fitted on
    model = fit_bgnbd(summary)
    rows = np.searchsorted(summary.user_ids, user_ids)
    if not np.array_equal(summary.user_ids[np.minimum(rows, len(summary) - 1)], user_ids):
        raise ValueError("an experiment shopper has no purchase before the decision day")
    s = summary.take(rows)
    gap = np.divide(s.recency, s.frequency, out=np.full(n, np.nan), where=s.frequency > 0)
    lines = _lines(world / "events.jsonl.gz", index)
    features = {"frequency": s.frequency, "recency": s.recency, "age": s.age, "monetary": s.monetary,
                "first_spend": s.first_spend, "silent_days": s.age - s.recency, "mean_gap": gap,
                "silent_over_gap": (s.age - s.recency) / gap,
                "day_value": (s.monetary * s.frequency + s.first_spend) / (s.frequency + 1),
                "p_alive": model.p_alive(s), "p_buy_window": model.p_any_purchase(s, window_days),
                "expected_window": model.expected_purchases(s, window_days),
                **_basket_features(lines, catalog, n, end)}
    purchases, profit = _outcomes(lines, catalog, n, end, window_days, float(experiment["coupon_value"]))
    treated = np.array([experiment["arms"][u] == "coupon" for u in user_ids.tolist()])
    return Experiment(user_ids, treated, np.column_stack(list(features.values())), list(features), purchases, profit,
                      1.0 - features["p_buy_window"], window_days)


# ---------------------------------------------------------------- learners


def _boost(objective: str, x: np.ndarray, y: np.ndarray, rounds: int) -> xgboost.Booster:
    return xgboost.train({**XGB, "objective": objective, "seed": SEED}, xgboost.DMatrix(x, label=y, missing=np.nan),
                         num_boost_round=rounds)


def _predict(booster: xgboost.Booster, x: np.ndarray, rounds: int) -> np.ndarray:
    return booster.predict(xgboost.DMatrix(x, missing=np.nan), iteration_range=(0, rounds)).astype(np.float64)


Uplift = Callable[[np.ndarray, int], np.ndarray]  # (features, trees used) -> predicted uplift


def fit_two_model(x: np.ndarray, t: np.ndarray, y: np.ndarray, rounds: int, objective: str) -> Uplift:
    """One model of the outcome per arm; the uplift is their difference."""
    with_coupon, without = _boost(objective, x[t], y[t], rounds), _boost(objective, x[~t], y[~t], rounds)
    return lambda z, r: _predict(with_coupon, z, r) - _predict(without, z, r)


def fit_transformed(x: np.ndarray, t: np.ndarray, y: np.ndarray, rounds: int, objective: str = "") -> Uplift:
    """A regression on the transformed outcome y * (t / e - (1 - t) / (1 - e)), whose
    expectation given x is the uplift when the coupon was assigned at random with chance e."""
    e = t.mean()
    model = _boost("reg:squarederror", x, y * (t / e - (1 - t) / (1 - e)), rounds)
    return lambda z, r: _predict(model, z, r)


LEARNERS = {"two_model": fit_two_model, "transformed_outcome": fit_transformed}
TREES = (25, 50, 100, 200, 400)  # the candidates' sizes, read off one fit of the largest
FOLDS = 5


# ---------------------------------------------------------------- judging


def observed_gain(treated: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Along a ranked list, the incremental total estimated for contacting the first k:
    k * (treated mean - control mean among them); NaN until both arms are present."""
    t = treated.astype(float)
    n_t, n_c = np.cumsum(t), np.cumsum(1 - t)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.arange(1, len(t) + 1) * (np.cumsum(y * t) / n_t - np.cumsum(y * (1 - t)) / n_c)


def qini(gain: np.ndarray) -> float:
    """The area between the gain curve and the random line from 0 to its end, per shopper,
    over the shares contacted 1%, 2%, ..., 100%."""
    n = len(gain)
    shares = np.arange(1, 101) / 100
    at = gain[np.maximum(np.ceil(shares * n).astype(int) - 1, 0)]
    return float(np.nanmean(at - shares * gain[-1]) / n)


def _top(n: int, share: float) -> int:
    return max(int(np.ceil(share * n)), 1)


def figures(t: np.ndarray, y: np.ndarray, profit: np.ndarray, true_uplift: np.ndarray,
            true_profit: np.ndarray) -> dict[str, Callable[[np.ndarray], float]]:
    """Each judged figure as a function of a ranked list of rows (best first)."""
    def observed_top(values: np.ndarray, share: float) -> Callable[[np.ndarray], float]:
        def figure(rows: np.ndarray) -> float:
            top = rows[:_top(len(rows), share)]
            treated = t[top]
            if treated.all() or not treated.any():
                return float("nan")
            return 1000 * float(values[top][treated].mean() - values[top][~treated].mean())
        return figure

    def truth_top(values: np.ndarray, share: float) -> Callable[[np.ndarray], float]:
        return lambda rows: 1000 * float(values[rows[:_top(len(rows), share)]].mean())

    out: dict[str, Callable[[np.ndarray], float]] = {
        "qini_observed": lambda rows: qini(observed_gain(t[rows], y[rows])),
        "qini_truth": lambda rows: qini(np.cumsum(true_uplift[rows]))}
    for share in TOPS:
        tag = f"top{round(share * 100)}"
        out[f"{tag}_incremental_per_1000_observed"] = observed_top(y, share)
        out[f"{tag}_incremental_per_1000_truth"] = truth_top(true_uplift, share)
        out[f"{tag}_profit_per_1000_observed"] = observed_top(profit, share)
        out[f"{tag}_profit_per_1000_truth"] = truth_top(true_profit, share)
    return out


def _ranker(score: np.ndarray, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """rows -> those rows ranked by score, highest first, ties in a seeded random order."""
    tiebreak = np.random.default_rng(seed).random(len(score))
    position = np.empty(len(score), np.int64)
    position[np.lexsort((tiebreak, -score))] = np.arange(len(score))
    by_position = np.argsort(position)
    return lambda rows: by_position[np.sort(position[rows])]


def judge(scores: dict[str, np.ndarray], arrays: dict[str, np.ndarray], seed: int, resamples: int) -> dict:
    """Every figure of every ranking with its interval, and the uplift model's differences from
    the baselines, all on the same resamples of the judged shoppers."""
    n = len(arrays["t"])
    rankers = {name: _ranker(score, seed) for name, score in scores.items()}
    named = figures(**arrays)

    def interval(statistic: Callable[[np.ndarray], float]) -> dict:
        low, high = bootstrap_statistic(statistic, n, seed, resamples)
        return {"value": statistic(np.arange(n)), "low": low, "high": high}

    out: dict = {"rankings": {}, "differences": {}}
    for name, rank in rankers.items():
        out["rankings"][name] = {f: interval(lambda rows, fig=fig, rank=rank: fig(rank(rows))) for f, fig in named.items()}
    for model in (name for name in rankers if name.startswith("uplift_model")):
        for base in ("churn_risk", "random"):
            out["differences"][f"{model}_minus_{base}"] = {
                f: interval(lambda rows, fig=fig, a=rankers[model], b=rankers[base]: fig(a(rows)) - fig(b(rows)))
                for f, fig in named.items()}
    return out


def segments(ranked: np.ndarray, y1: np.ndarray, y0: np.ndarray) -> dict[str, float]:
    """Shares of the truth's kinds of shopper among `ranked`: persuaded (buys more with the
    coupon), sure thing (buys as much either way), lost cause (buys neither way), sleeping dog
    (buys less with it)."""
    a, b = y1[ranked], y0[ranked]
    return {"persuadable": float(np.mean(a > b)), "sure_thing": float(np.mean((a == b) & (b > 0))),
            "lost_cause": float(np.mean((a == 0) & (b == 0))), "sleeping_dog": float(np.mean(a < b))}


# ---------------------------------------------------------------- the run


def read_truth(world: Path, user_ids: np.ndarray) -> dict[str, np.ndarray]:
    truth = json.loads((Path(world) / "truth.json").read_text())["shoppers"]
    rows = {u: i for i, u in enumerate(truth.pop("user_id"))}
    take = np.array([rows[u] for u in user_ids.tolist()])
    return {k: np.asarray(v)[take] for k, v in truth.items()}


def choose_learner(data: Experiment, fit_rows: np.ndarray, y: np.ndarray, objective: str,
                   log=print) -> tuple[tuple[str, int], dict]:
    """Each learner at each size in TREES scored by the Qini coefficient of the experiment's
    outcomes over out-of-fold predictions (FOLDS folds of the fitting half, by shopper); the
    largest wins. Folds, not one validation split: the Qini of a split of a few thousand
    shoppers is too noisy to choose by, and pooling the folds uses every fitting shopper."""
    x, t, y = data.x[fit_rows], data.treated[fit_rows], y[fit_rows]
    fold = np.random.default_rng([SEED, 2]).permutation(len(fit_rows)) % FOLDS
    found: dict = {}
    for name, learner in LEARNERS.items():
        out_of_fold = np.zeros((len(TREES), len(fit_rows)))
        for k in range(FOLDS):
            predict = learner(x[fold != k], t[fold != k], y[fold != k], max(TREES), objective)
            for i, trees in enumerate(TREES):
                out_of_fold[i, fold == k] = predict(x[fold == k], trees)
        for i, trees in enumerate(TREES):
            ranked = _ranker(out_of_fold[i], SEED)(np.arange(len(fit_rows)))
            found[f"{name}/{trees}"] = qini(observed_gain(t[ranked], y[ranked]))
    best = max(found, key=found.get)
    log("validation Qini: " + ", ".join(f"{k} {v:.4f}" for k, v in found.items()) + f"; chosen {best}")
    name, trees = best.split("/")
    return (name, int(trees)), found


# What each uplift model is fitted to: purchase days (the measure) and profit (the
# measure a campaign pays by), each with the objective that suits its values.
TARGETS = {"uplift_model": ("purchases", "count:poisson"), "uplift_model_profit": ("profit", "reg:squarederror")}


def fit_uplift_models(data: Experiment, fit_rows: np.ndarray, judged: np.ndarray, log=print) -> tuple[dict, dict]:
    """Each target's learner chosen and refitted on the fitting half; its scores of the judged half."""
    scores, chosen = {}, {}
    for name, (target, objective) in TARGETS.items():
        y = getattr(data, target)
        (learner, trees), validation = choose_learner(data, fit_rows, y, objective, log)
        model = LEARNERS[learner](data.x[fit_rows], data.treated[fit_rows], y[fit_rows], trees, objective)
        scores[name] = model(data.x[judged], trees)
        chosen[name] = {"target": target, "learner": learner, "trees": trees, "validation_qini_observed": validation}
    return scores, chosen


def run(world: Path, seed: int = SEED, resamples: int = BOOTSTRAP, log=print) -> dict:
    data = load_experiment(world)
    truth = read_truth(world, data.user_ids)
    if not np.array_equal(truth["treated"].astype(bool), data.treated):
        raise ValueError("the experiment's arms and the truth's disagree")
    n = len(data.user_ids)
    order = np.random.default_rng(seed).permutation(n)  # split by shopper: one row each
    fit_rows, judged = order[: n // 2], order[n // 2:]
    scores, chosen = fit_uplift_models(data, fit_rows, judged, log)
    true_uplift = truth["purchases_coupon"] - truth["purchases_control"]
    true_profit = truth["margin_coupon"] - truth["coupon_cost"] - truth["margin_control"]
    scores.update({"churn_risk": data.churn_risk[judged], "random": np.random.default_rng([seed, 1]).random(len(judged)),
                   "oracle": truth["expected_uplift"][judged]})
    arrays = {"t": data.treated[judged], "y": data.purchases[judged], "profit": data.profit[judged],
              "true_uplift": true_uplift[judged], "true_profit": true_profit[judged]}
    started = time.perf_counter()
    report = judge(scores, arrays, seed, resamples)
    log(f"bootstrap: {time.perf_counter() - started:.1f} s")
    y1, y0 = truth["purchases_coupon"][judged], truth["purchases_control"][judged]
    report["segments_top10"] = {name: segments(_ranker(s, seed)(np.arange(len(judged)))[:_top(len(judged), 0.1)],
                                               y1, y0) for name, s in scores.items()}
    report["segments_all"] = segments(np.arange(len(judged)), y1, y0)
    config = json.loads((Path(world) / "truth.json").read_text())["config"]
    return {"world": {"config": config, "experiment_shoppers": n, "coupon": int(data.treated.sum()),
                      "control": int((~data.treated).sum()),
                      "true_incremental_per_1000": 1000 * float(true_uplift.mean()),
                      "observed_incremental_per_1000": 1000 * float(data.purchases[data.treated].mean()
                                                                    - data.purchases[~data.treated].mean()),
                      "true_profit_per_1000": 1000 * float(true_profit.mean()),
                      "active_at_decision_share": float(truth["active_at_decision"].mean()),
                      "averse_share": float(truth["averse"].mean())},
            "split": {"fit": len(fit_rows), "judged": len(judged), "folds": FOLDS}, "features": data.names,
            "models": chosen, "bootstrap": resamples, "seed": seed, "judged": report}


def table(report: dict) -> str:
    columns = [("top10_incremental_per_1000_observed", "top10 obs"), ("top10_incremental_per_1000_truth", "top10 true"),
               ("top30_incremental_per_1000_truth", "top30 true"), ("top10_profit_per_1000_truth", "top10 $ true"),
               ("top30_profit_per_1000_truth", "top30 $ true"), ("qini_truth", "Qini true")]
    lines = ["per 1,000 offers: incremental purchase days, profit in $ after the coupon (95% interval)",
             f"{'ranking':<20}" + "".join(f"{label:>26}" for _, label in columns)]
    for name, figs in report["judged"]["rankings"].items():
        cells = []
        for key, _ in columns:
            f = figs[key]
            digits = 4 if key.startswith("qini") else 0
            cells.append(f"{f['value']:.{digits}f} [{f['low']:.{digits}f}, {f['high']:.{digits}f}]")
        lines.append(f"{name:<20}" + "".join(f"{c:>26}" for c in cells))
    return "\n".join(lines)


def main() -> int:
    from hanzo.loadtest.reports import write_report
    from hanzo.training.simulator.winback import WinbackConfig, simulate_winback

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--shoppers", type=int, default=WinbackConfig.shoppers)
    parser.add_argument("--seed", type=int, default=WinbackConfig.seed, help="the world's seed")
    parser.add_argument("--world", type=Path, help="keep the simulated files here (default: a temporary folder)")
    parser.add_argument("--bootstrap", type=int, default=BOOTSTRAP)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        world = args.world or Path(scratch)
        started = time.perf_counter()
        simulate_winback(WinbackConfig(seed=args.seed, shoppers=args.shoppers)).write(world)
        print(f"simulated and written: {time.perf_counter() - started:.1f} s")
        report = run(world, resamples=args.bootstrap)
    report["seconds"] = time.perf_counter() - started
    print(table(report))
    if args.out:
        write_report(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
