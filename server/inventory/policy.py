"""Reorder points from a forecast: demand over the lead time `mu_L` (the forecast summed over
it) and its spread `sigma_L` (each step's spread from its 10-90% band, steps taken as
independent), then `reorder_point = mu_L + z_alpha * sigma_L` for the service level alpha (the
chance of no stockout while a replenishment is on its way); the safety stock is the second
term."""
from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

# the 10-90% band of a normal spans 2 * 1.2816 standard deviations
Z90 = NormalDist().inv_cdf(0.9)
_BAND_SIGMAS = 2 * Z90


@dataclass
class ReorderPoint:
    lead_time_demand: float
    sigma: float
    safety_stock: float
    reorder_point: float


def step_sigma(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    return np.maximum(np.asarray(high, np.float64) - np.asarray(low, np.float64), 0.0) / _BAND_SIGMAS


def reorder_point(mean: np.ndarray, low: np.ndarray, high: np.ndarray, lead_time: int,
                  service_level: float) -> ReorderPoint:
    """Over the first `lead_time` steps of a forecast (mean and 10-90% band per step)."""
    if not 0.5 <= service_level < 1.0:
        raise ValueError(f"service_level must be in [0.5, 1), not {service_level}")
    if lead_time < 1 or lead_time > len(mean):
        raise ValueError(f"lead time of {lead_time} steps needs a forecast that long (have {len(mean)})")
    mu = float(np.sum(mean[:lead_time]))
    sigma = float(np.sqrt(np.sum(step_sigma(low[:lead_time], high[:lead_time]) ** 2)))
    safety = NormalDist().inv_cdf(service_level) * sigma
    return ReorderPoint(mu, sigma, safety, mu + safety)


def daily(mean: np.ndarray, low: np.ndarray, high: np.ndarray, step_days: int) -> tuple:
    """A plan's steps as days: a weekly step's demand spread evenly over its seven days, its
    spread shared as independent days' would be (variance / 7), the band rebuilt around that."""
    if step_days == 1:
        return mean, low, high
    sigma = np.repeat(step_sigma(low, high) / np.sqrt(step_days), step_days)
    mean = np.repeat(np.asarray(mean, np.float64) / step_days, step_days)
    return mean, np.maximum(mean - Z90 * sigma, 0.0), mean + Z90 * sigma
