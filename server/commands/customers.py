"""`hanzo score-customers`: the nightly batch of customer outlooks for email and BI tools, from
an event file's purchases up to `--as-of`: user_id, p_buy_again, expected_purchases,
expected_spend, risk_band, reasons (a purchase counted as a customer-day with at least one
order). The models are fitted on the same history: the learned model (gradient-boosted trees
correcting BG/NBD and Gamma-Gamma; needs the `train` extra) or, with `--model bgnbd`, the
customer-base models alone. `--save-model` keeps the fitted learned model for `hanzo serve`."""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

from .common import CommandError, add_command, existing_file, positive, stderr

HEADER = ["user_id", "p_buy_again", "expected_purchases", "expected_spend", "risk_band", "reasons"]


def register(sub: argparse._SubParsersAction) -> None:
    command = add_command(sub, "score-customers", "who buys again, how often and for how much, for every customer")
    command.add_argument("--events", type=Path, required=True, help="events (.jsonl[.gz]); their purchases are read")
    command.add_argument("--as-of", required=True, help="the last day of history, YYYY-MM-DD")
    command.add_argument("--horizon-days", type=int, required=True, help="days ahead the outlook covers")
    command.add_argument("--out", type=Path, required=True, help="CSV, one row per customer")
    command.add_argument("--model", choices=("learned", "bgnbd"), default="learned",
                         help="learned: trees correcting BG/NBD (train extra); bgnbd: BG/NBD + Gamma-Gamma alone")
    command.add_argument("--save-model", type=Path, help="folder to keep the fitted learned model in")
    command.set_defaults(func=_score)


def _day(flag: str, text: str) -> int:
    import numpy as np

    try:
        return int(np.datetime64(text, "D").astype(np.int64))
    except ValueError:
        raise CommandError(f"{flag} must be a date YYYY-MM-DD, not {text!r}") from None


def _score(args: argparse.Namespace) -> int:
    from ..customers.purchases import read_purchases
    from ..customers.rfm import summarize

    existing_file("--events", args.events)
    positive("--horizon-days", args.horizon_days)
    if args.save_model and args.model != "learned":
        raise CommandError("--save-model keeps the learned model; it needs --model learned")
    as_of = _day("--as-of", args.as_of)
    try:
        users, days, spend = read_purchases(args.events)
    except ValueError as error:  # a line that is not an event, named by the reader
        raise CommandError(str(error)) from None
    summary = summarize(users, days, spend, as_of)
    if len(summary) < 10:
        raise CommandError(f"{args.events}: {len(summary)} customers bought by {args.as_of}; the models need more")
    try:
        scores = _learned(args, users, days, spend, as_of, summary) if args.model == "learned" else \
            _bgnbd(args, summary)
    except ValueError as error:  # a history the models cannot be fitted on, said why
        raise CommandError(f"{args.events} as of {args.as_of}: {error}") from None
    with open(args.out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for i, user in enumerate(summary.user_ids.tolist()):
            writer.writerow([user, f"{scores.p_buy_again[i]:.4f}", f"{scores.expected_purchases[i]:.4f}",
                             f"{scores.expected_spend[i]:.2f}", scores.risk_band[i], "; ".join(scores.reasons[i])])
    stderr(f"{len(summary)} customers as of {args.as_of}, {args.horizon_days} days ahead -> {args.out}")
    return 0


def _bgnbd(args: argparse.Namespace, summary):
    from ..customers.bgnbd import fit_bgnbd
    from ..customers.gamma_gamma import fit_gamma_gamma
    from ..customers.scores import score_bgnbd

    model, spend_model = fit_bgnbd(summary), fit_gamma_gamma(summary)
    _say_base(model, spend_model)
    return score_bgnbd(summary, model, spend_model, args.horizon_days)


def _learned(args: argparse.Namespace, users, days, spend, as_of: int, summary):
    try:
        from hanzo.training.customers.learned import fit_customer_model
        import xgboost  # noqa: F401
    except ImportError as error:
        raise CommandError(f"the learned model needs the train extra (pip install 'hanzo[train]'): {error}; "
                           "or --model bgnbd") from None
    from ..customers.lifetime import lifetime_features
    from ..customers.scores import score_learned

    model = fit_customer_model(users, days, spend, as_of, args.horizon_days)
    _say_base(model.bgnbd, model.gamma_gamma)
    stderr(f"learned model: trees on the {model.trained_horizon_days} days before {args.as_of}, "
           f"{model.purchases.n_trees} + {model.spend.n_trees} trees, shape {model.shape:.3f}")
    if args.save_model:
        model.save(args.save_model)
        stderr(f"model kept in {args.save_model}")
    return score_learned(lifetime_features(users, days, spend, as_of), model, args.horizon_days)


def _say_base(model, spend_model) -> None:
    stderr(f"BG/NBD r={model.r:.4f} alpha={model.alpha:.3f} a={model.a:.4f} b={model.b:.4f}; "
           f"Gamma-Gamma p={spend_model.p:.3f} q={spend_model.q:.3f} v={spend_model.v:.3f}")
