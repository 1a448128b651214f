"""`hanzo score-customers`: the nightly batch of customer outlooks for email and BI tools, from
an event file's purchases up to `--as-of`: user_id, p_buy_again, expected_purchases,
expected_spend, risk_band, reasons (a purchase counted as a customer-day with at least one
order). The models (BG/NBD and Gamma-Gamma) are fitted on the same history."""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

from .common import CommandError, add_command, existing_file, positive, stderr


def register(sub: argparse._SubParsersAction) -> None:
    command = add_command(sub, "score-customers", "who buys again, how often and for how much, for every customer")
    command.add_argument("--events", type=Path, required=True, help="events (.jsonl[.gz]); their purchases are read")
    command.add_argument("--as-of", required=True, help="the last day of history, YYYY-MM-DD")
    command.add_argument("--horizon-days", type=int, required=True, help="days ahead the outlook covers")
    command.add_argument("--out", type=Path, required=True, help="CSV, one row per customer")
    command.set_defaults(func=_score)


def _score(args: argparse.Namespace) -> int:
    import numpy as np

    from ..customers.bgnbd import fit_bgnbd
    from ..customers.gamma_gamma import fit_gamma_gamma
    from ..customers.purchases import read_purchases
    from ..customers.rfm import summarize
    from ..customers.scores import score

    existing_file("--events", args.events)
    positive("--horizon-days", args.horizon_days)
    try:
        as_of = int(np.datetime64(args.as_of, "D").astype(np.int64))
    except ValueError:
        raise CommandError(f"--as-of must be a date YYYY-MM-DD, not {args.as_of!r}") from None
    users, days, spend = read_purchases(args.events)
    summary = summarize(users, days, spend, as_of)
    if len(summary) < 10:
        raise CommandError(f"{args.events}: {len(summary)} customers bought by {args.as_of}; the models need more")
    model, spend_model = fit_bgnbd(summary), fit_gamma_gamma(summary)
    scores = score(summary, model, spend_model, args.horizon_days)
    with open(args.out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "p_buy_again", "expected_purchases", "expected_spend", "risk_band", "reasons"])
        for i, user in enumerate(summary.user_ids.tolist()):
            writer.writerow([user, f"{scores.p_buy_again[i]:.4f}", f"{scores.expected_purchases[i]:.4f}",
                             f"{scores.expected_spend[i]:.2f}", scores.risk_band[i], scores.reasons[i]])
    stderr(f"BG/NBD r={model.r:.4f} alpha={model.alpha:.3f} a={model.a:.4f} b={model.b:.4f}; "
           f"Gamma-Gamma p={spend_model.p:.3f} q={spend_model.q:.3f} v={spend_model.v:.3f}")
    stderr(f"{len(summary)} customers as of {args.as_of}, {args.horizon_days} days ahead -> {args.out}")
    return 0
