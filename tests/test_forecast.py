"""Demand forecasts: a series built from known trend, weekly season, promotion and holiday
effects is recovered; closed days forecast nothing; the seasonal naive baseline; the sales
table reader; `hanzo forecast`; and, on ../shared/data, MASE at least 10% below seasonal naive."""
from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest
from helpers import SHARED_DATA, shared_data

from hanzo.server.inventory.forecast import Series, fit_forecast, mase, seasonal_naive, wape
from hanzo.server.inventory.sales import future_steps, read_sales



def _daily(days: int, seed: int = 0) -> Series:
    rng = np.random.default_rng(seed)
    dates = np.datetime64("2024-01-01") + np.arange(days)
    weekday = (dates.astype(np.int64) + 3) % 7
    promo = ((np.arange(days) // 7) % 2 == 0).astype(float) * (weekday < 5)
    holiday = (rng.random(days) < 0.02).astype(float)
    open_ = ((weekday != 6) & (holiday == 0)).astype(float)
    level = 1000 * np.exp(0.0005 * np.arange(days) + 0.25 * np.sin(2 * np.pi * weekday / 7) + 0.3 * promo)
    units = np.where(open_ > 0, level * np.exp(rng.normal(0, 0.05, days)), 0.0)
    return Series(dates, units, promo, holiday, open_)


def test_known_effects_are_recovered_and_closed_days_sell_nothing():
    series = _daily(500)
    past, held = series.take(slice(0, 458)), series.take(slice(458, None))
    forecast = fit_forecast(past, held)
    open_ = held.open > 0
    assert (forecast.mean[~open_] == 0).all()
    # noise is 5%: the forecast is within a few percent, and far better than last week's values
    assert wape(held.units, forecast.mean) < 0.06
    naive = np.where(open_, seasonal_naive(past, len(held)), 0.0)
    assert mase(held.units, forecast.mean, past.units, 7) < 0.6 * mase(held.units, naive, past.units, 7)
    inside = (held.units[open_] >= forecast.low[open_]) & (held.units[open_] <= forecast.high[open_])
    # a 10-90% interval: about 80% of the held-out days inside; one that held them all would be too wide
    assert 0.65 <= inside.mean() <= 0.95


def test_seasonal_naive_repeats_the_last_season():
    dates = np.datetime64("2024-01-01") + np.arange(0, 14 * 7, 7)
    series = Series(dates, np.arange(14.0), np.zeros(14), np.zeros(14), np.ones(14))
    assert series.period == 52
    daily = Series(np.datetime64("2024-01-01") + np.arange(10), np.arange(10.0), *(np.zeros(10),) * 2, np.ones(10))
    assert seasonal_naive(daily, 9).tolist() == [3, 4, 5, 6, 7, 8, 9, 3, 4]


def test_sales_table_with_known_future_rows_and_hanzo_forecast(tmp_path):
    path = tmp_path / "sales.csv"
    series = _daily(120)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["date", "location", "sku", "units", "promo", "holiday", "open"])
        for d, u, p, h, o in zip(series.dates, series.units, series.promo, series.holiday, series.open):
            writer.writerow([str(d), "s1", "p1", f"{u:.2f}", int(p), int(h), int(o)])
        writer.writerow([str(series.dates[-1] + 1), "s1", "p1", "", 0, 0, 0])  # closed tomorrow, known ahead
    history, known = read_sales(path)
    assert len(history[("s1", "p1")]) == 120 and len(known[("s1", "p1")]) == 1
    ahead, assumed = future_steps(history[("s1", "p1")], 3, known[("s1", "p1")])
    assert ahead.open.tolist() == [0.0, 1.0, 1.0] and assumed is not None  # two days past the known row
    out = tmp_path / "forecast.csv"
    run = subprocess.run([sys.executable, "-m", "hanzo.server.commands", "forecast", "--sales", str(path), "--horizon", "3",
                          "--out", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 3 and float(rows[0]["forecast"]) == 0.0 and float(rows[1]["forecast"]) > 0
    assert all(float(r["forecast_low"]) <= float(r["forecast"]) <= float(r["forecast_high"]) for r in rows[1:])


def test_bad_sales_tables_are_refused_by_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("date,location,sku,units,promo,holiday,open\n2024-01-01,s,p,abc,0,0,1\n")
    with pytest.raises(ValueError, match="bad.csv:2"):
        read_sales(path)
    path.write_text("date,location,units\n")
    with pytest.raises(ValueError, match="missing columns"):
        read_sales(path)


@pytest.mark.parametrize("name, holdout", [pytest.param("walmart", 13, marks=shared_data("walmart")),
                                           pytest.param("rossmann", 42, marks=shared_data("rossmann"))])
def test_mase_at_least_ten_percent_below_seasonal_naive(name, holdout):
    from hanzo.training.inventory.backtest import backtest

    report = backtest(SHARED_DATA / name / "sales.csv", holdout)
    assert report["series"] >= 20 and report["mase"]["ratio"] <= 0.9, report


def test_sales_table_from_purchase_events(tmp_path):
    from hanzo.server.inventory.sales_from_events import write_sales_table

    day = 86_400_000
    base = 20_000 * day
    events = [
        {"event_type": "order", "timestamp": base + 10, "payload": {"order_id": "o1", "location": "wh-east"}},
        {"event_type": "purchase", "timestamp": base + 10, "payload": {"order_id": "o1", "product_id": "p1",
                                                                        "quantity": 2}},
        {"event_type": "purchase", "timestamp": base + 2 * day, "payload": {"order_id": "o9", "product_id": "p1"}},
        {"event_type": "purchase", "timestamp": base + 3 * day, "payload": {"order_id": "o1", "product_id": "p1",
                                                                            "quantity": 1}},
        {"event_type": "product_view", "timestamp": base, "payload": {"product_id": "p1"}},
    ]
    path = tmp_path / "sales.csv"
    assert write_sales_table(events, path) == 4 + 2  # wh-east: days 0-3; ALL (no order found): days 2-3
    history, _ = read_sales(path)
    assert history[("wh-east", "p1")].units.tolist() == [2.0, 0.0, 0.0, 1.0]
    assert history[("ALL", "p1")].units.tolist() == [1.0, 0.0]


def test_weekly_plans_answer_in_days():
    from hanzo.server.inventory.policy import daily, reorder_point

    mean, low, high = daily(np.array([700.0, 700.0]), np.array([600.0, 600.0]), np.array([800.0, 800.0]), 7)
    assert len(mean) == 14 and np.allclose(mean, 100.0)
    one_day = reorder_point(mean, low, high, 1, 0.95)
    eight_days = reorder_point(mean, low, high, 8, 0.95)
    assert one_day.lead_time_demand == pytest.approx(100.0) and eight_days.lead_time_demand == pytest.approx(800.0)
    # the week's spread over seven independent days: a day carries 1/sqrt(7) of it
    week = reorder_point(np.array([700.0]), np.array([600.0]), np.array([800.0]), 1, 0.95)
    assert one_day.sigma == pytest.approx(week.sigma / np.sqrt(7), rel=1e-6)


def test_a_series_never_open_forecasts_nothing():
    dates = np.datetime64("2024-01-01") + np.arange(30)
    closed = Series(dates, np.zeros(30), np.zeros(30), np.zeros(30), np.zeros(30))
    ahead = Series(dates[-1] + 1 + np.arange(5), np.full(5, np.nan), np.zeros(5), np.zeros(5), np.ones(5))
    forecast = fit_forecast(closed, ahead)
    assert (forecast.mean == 0).all() and (forecast.high == 0).all()


def test_rolling_origins_spread_over_the_last_year_and_gaps_are_closed_steps():
    from hanzo.server.inventory.sales import regular_steps as regular
    from hanzo.training.inventory.rolling import origins

    cuts = origins(130, 13, 6, 52)
    assert len(cuts) == 6 and cuts[-1] == 130 - 13 and cuts == sorted(cuts) and cuts[0] >= 130 - 13 - 52
    dates = np.array(["2024-01-01", "2024-01-02", "2024-01-05"], "datetime64[D]")
    ones = np.ones(3)
    filled = regular(Series(dates, np.array([5.0, 6.0, 7.0]), ones * 0, ones * 0, ones))
    assert len(filled) == 5 and list(filled.units) == [5, 6, 0, 0, 7] and list(filled.open) == [1, 1, 0, 0, 1]


def _daily_table(days: int = 800, seed: int = 3) -> dict[str, Series]:
    """Two shops with a weekly pattern and a yearly swing; one closed every Sunday."""
    rng = np.random.default_rng(seed)
    dates = np.datetime64("2021-01-04") + np.arange(days)
    weekday = (dates.astype(np.int64) + 3) % 7
    season = 1 + 0.3 * np.sin(2 * np.pi * np.arange(days) / 365.25)
    out = {}
    for name, sunday_closed in (("a", True), ("b", False)):
        open_ = np.where(sunday_closed & (weekday == 6), 0.0, 1.0)
        units = open_ * season * (100 + 20 * (weekday == 4)) * rng.lognormal(0, 0.08, days)
        out[name] = Series(dates, units, np.zeros(days), np.zeros(days), open_)
    return out


def test_the_calendar_is_inferred_where_no_future_rows_say_it():
    from hanzo.server.inventory.calendar import infer_future

    table = _daily_table()
    ahead = table["a"].dates[-1] + np.arange(1, 15)
    future, said = infer_future(table["a"], ahead)
    sundays = ((ahead.astype(np.int64) + 3) % 7) == 6
    assert (future.open[sundays] == 0).all() and (future.open[~sundays] == 1).all()
    assert said.closed_weekdays == ["Sundays"] and "closed on Sundays" in said.describe()
    future_b, said_b = infer_future(table["b"], ahead)
    assert future_b.open.all() and said_b.describe().startswith("open every step")
    # a holiday the table marked in two years comes round on the same date, closed as it was; one
    # marked once (a date that moves, as Easter does) is not carried
    marked = table["b"]
    for date in ("2021-12-25", "2022-12-25", "2022-04-17"):
        i = np.flatnonzero(marked.dates == np.datetime64(date))[0]
        marked.holiday[i], marked.open[i] = 1.0, 0.0
    christmas = np.flatnonzero(marked.dates == np.datetime64("2022-12-25"))[0]
    future_c, said_c = infer_future(marked.take(slice(0, christmas + 300)),
                                    np.datetime64("2023-12-20") + np.arange(10))
    assert future_c.holiday.tolist() == [0] * 5 + [1] + [0] * 4 and future_c.open[5] == 0
    assert said_c.closed_holidays == ["2023-12-25"]
    easter, _ = infer_future(marked.take(slice(0, christmas + 300)), np.datetime64("2023-04-14") + np.arange(7))
    assert not easter.holiday.any() and easter.open.all()  # b opens every day



def test_the_nightly_combination_is_chosen_on_the_history_and_its_band_covers():
    from hanzo.server.inventory.calendar import infer_future
    from hanzo.server.inventory.ensemble import COMBINATIONS, forecast_table

    table = _daily_table()
    horizon = 28
    pasts = {k: s.take(slice(0, len(s) - horizon)) for k, s in table.items()}
    helds = {k: s.take(slice(len(s) - horizon, None)) for k, s in table.items()}
    futures = {k: infer_future(pasts[k], helds[k].dates)[0] for k in table}
    forecasts, choice = forecast_table(pasts, futures, horizon, lambda key, past, held: infer_future(past, held.dates)[0])
    assert choice.windows == 3 and choice.combination in COMBINATIONS and choice.statistical
    assert set(choice.scores) == {"+".join(c) for c in COMBINATIONS} and np.isfinite(choice.log_band).all()
    a = forecasts["a"]
    assert (a.mean[futures["a"].open == 0] == 0).all() and (a.low <= a.mean).all() and (a.mean <= a.high).all()
    for key, held in helds.items():
        naive = np.where(futures[key].open > 0, seasonal_naive(pasts[key], horizon), 0.0)
        ours, theirs = (mase(held.units, f, pasts[key].units, 7) for f in (forecasts[key].mean, naive))
        assert ours < 0.9 * theirs, (key, ours, theirs)
    sold = helds["b"].units
    inside = np.mean((sold >= forecasts["b"].low) & (sold <= forecasts["b"].high))
    assert 0.5 <= inside <= 1.0


def test_without_statsforecast_the_nightly_job_combines_its_own_models():
    from hanzo.server.inventory.ensemble import FALLBACK, choose

    table = _daily_table(days=500)
    choice = choose(table, lambda key, past, held: held, 28, statistical=False)
    assert not choice.statistical and choice.combination in FALLBACK and choice.windows == 3


def test_the_replenishment_replay_runs_on_the_nightly_forecast(tmp_path):
    from hanzo.server.inventory.ensemble import COMBINATIONS
    from hanzo.training.inventory.replay import replay

    path = tmp_path / "sales.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["date", "location", "sku", "units", "promo", "holiday", "open"])
        for name, s in _daily_table(days=420).items():
            for d, u, o in zip(s.dates, s.units, s.open):
                writer.writerow([str(d), name, "ALL", f"{u:.2f}", 0, 0, int(o)])
    report = replay(path, holdout=14, lead_time=3)
    assert report["series"] == 2 and report["forecast"] in {"+".join(c) for c in COMBINATIONS}
    assert 0 <= report["forecast_policy"]["stockout_rate"] <= 1 and report["forecast_policy"]["turnover"] > 0
    # a higher service level holds more stock: fewer stockouts, lower turnover
    curve = report["curves"]["forecast"]
    assert curve["0.99"]["stockout_rate"] <= curve["0.5"]["stockout_rate"]
    assert curve["0.99"]["turnover"] <= curve["0.5"]["turnover"]
