"""What happened after each decision, as Prometheus series: outcomes of the lists served
(clicks, purchases, revenue), fraud scores settled by chargebacks, purchases at a quoted price,
and each model's inputs drifting from its training reference. Every family is declared even
while empty, so dashboards and alerts find it."""
from __future__ import annotations

from typing import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..experiments.drift import DriftWindow
from ..experiments.labels import LabelJoin
from ..experiments.outcomes import OutcomeJoin
from ..experiments.quotes import QuoteJoin


def drift_metrics(windows: dict[tuple[str, str], DriftWindow]) -> Iterator[Metric]:
    """Per model version that ships a training reference: each input's and the score's PSI
    and KS over its last scored rows (server/experiments/drift.py)."""
    labels = ["model", "version", "input"]
    psi = GaugeMetricFamily("hanzo_drift_psi", "population stability index of an input (or the score) over "
                            "the last scored rows against training's", labels=labels)
    ks = GaugeMetricFamily("hanzo_drift_ks", "largest gap between the cumulative shares of an input (or the "
                           "score), live against training, binned", labels=labels)
    for (model, version), window in sorted(windows.items()):
        for feature, (p, k) in (window.measure() or {}).items():
            psi.add_metric([model, version, feature], p)
            ks.add_metric([model, version, feature], k)
    yield from (psi, ks)


def quote_metrics(quotes: QuoteJoin | None) -> Iterator[Metric]:
    """Per demand-model version: quotes answered, and the purchases at the quoted price within
    the attribution window, their units, revenue and margin (server/experiments/quotes.py)."""
    families = {name: CounterMetricFamily(f"hanzo_pricing_{name}", help_text, labels=["model_version"])
                for name, help_text in (
                    ("quotes", "prices quoted (QuotePrice answers, not shadow copies)"),
                    ("quote_purchases", "purchases at a quoted price within the attribution window"),
                    ("quote_units", "units of those purchases"), ("quote_revenue", "revenue of those purchases"),
                    ("quote_margin", "margin (price - cost) of those purchases"))}
    for version, outcomes in sorted(quotes.versions.items() if quotes is not None else ()):
        for name, value in (("quotes", outcomes.quotes), ("quote_purchases", outcomes.purchases),
                            ("quote_units", outcomes.units), ("quote_revenue", outcomes.revenue),
                            ("quote_margin", outcomes.margin)):
            families[name].add_metric([version], value)
    yield from families.values()


def label_metrics(labels: LabelJoin | None) -> Iterator[Metric]:
    """Fraud scores by version and decision, those later charged back, and the scores' sum:
    precision per decision, what each let through, and calibration, as chargebacks arrive."""
    labels_ = ["version", "decision"]
    scored = CounterMetricFamily("hanzo_fraud_scored", "orders scored, by model version and decision", labels=labels_)
    charged = CounterMetricFamily("hanzo_fraud_charged_back", "orders scored that were later charged back, by "
                                  "model version and the decision they got", labels=labels_)
    score_sum = CounterMetricFamily("hanzo_fraud_score_sum", "the sum of the scores given, by model version "
                                    "(over hanzo_fraud_scored: the mean score, for calibration)", labels=["version"])
    late = CounterMetricFamily("hanzo_fraud_chargebacks_unmatched", "chargebacks for orders not scored here, or "
                               "no longer remembered")
    if labels is not None:
        for (version, decision), n in sorted(labels.scored.items()):
            scored.add_metric([version, decision], n)
            charged.add_metric([version, decision], labels.charged_back.get((version, decision), 0))
        for version, total in sorted(labels.score_sum.items()):
            score_sum.add_metric([version], total)
        late.add_metric([], labels.late)
    yield from (scored, charged, score_sum, late)


def experiment_metrics(outcomes: OutcomeJoin | None) -> Iterator[Metric]:
    """Per model version and arm: lists shown (recommendations, search results), and the
    clicks, purchases and revenue joined to them (server/experiments/outcomes.py); the ratios between them are CTR, conversion and
    revenue per list."""
    labels = ["model_version", "arm", "experiment"]
    families = {name: CounterMetricFamily(f"hanzo_experiment_{name}", help_text, labels=labels) for name, help_text in (
        ("lists", "result lists shown (Recommend's and Search's; model_version says which)"), ("clicks", "clicks on a product of a list shown"),
        ("purchases", "purchases of a clicked product within the attribution window"),
        ("revenue", "revenue of those purchases"))}
    for key, arm_outcomes in sorted(outcomes.arms.items() if outcomes is not None else ()):
        families["lists"].add_metric(list(key), arm_outcomes.clicks.den)
        families["clicks"].add_metric(list(key), arm_outcomes.clicks.num)
        families["purchases"].add_metric(list(key), arm_outcomes.purchases.num)
        families["revenue"].add_metric(list(key), arm_outcomes.revenue.num)
    late = CounterMetricFamily("hanzo_experiment_outcomes_late", "outcomes whose list was no longer remembered")
    late.add_metric([], outcomes.late if outcomes is not None else 0)
    yield from (*families.values(), late)
