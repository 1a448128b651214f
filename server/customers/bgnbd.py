"""The BG/NBD model of repeat buying (Fader, Hardie and Lee, "Counting your customers the easy
way", 2005): while alive a customer buys as a Poisson process of rate lambda ~ Gamma(r, alpha),
and after each purchase drops out with probability p ~ Beta(a, b). Fitted by maximum likelihood
on each customer's (frequency, recency, age), as the `lifetimes` package fits it, and read back
as the chance a customer is alive, the purchases expected in the next t days, and the chance of
at least one.

Fitting uses scipy (the `train` extra); the predictions are numpy alone, the Gaussian
hypergeometric function summed as a series, so the server can score without scipy."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .rfm import Summary


@dataclass(frozen=True)
class BGNBD:
    r: float
    alpha: float
    a: float
    b: float

    def p_alive(self, s: Summary) -> np.ndarray:
        """P(alive | history); a customer with no repeat purchase is alive for sure."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        x, t_x, T = s.frequency, s.recency, s.age
        log_ratio = np.log(a) - np.log(b + np.maximum(x, 1) - 1) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
        return np.where(x > 0, 1.0 / (1.0 + np.exp(log_ratio)), 1.0)

    def expected_purchases(self, s: Summary, t: float) -> np.ndarray:
        """E[purchases in (T, T + t] | history] (equation 10 of the paper)."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        x, t_x, T = s.frequency, s.recency, s.age
        z = t / (alpha + T + t)
        hyp = hyp2f1(r + x, b + x, a + b + x - 1, z)
        first = (a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp)
        second = 1 + np.where(x > 0, a / (b + x - 1), 0.0) * ((alpha + T) / (alpha + t_x)) ** (r + x)
        return first / second

    def p_any_purchase(self, s: Summary, t: float) -> np.ndarray:
        """P(at least one purchase in (T, T + t] | history): alive, and the Poisson process
        fires before the customer drops out. Alive customers keep buying at their posterior
        rate, Gamma(r + x, alpha + T); the chance of no purchase in t is then
        ((alpha + T) / (alpha + T + t)) ** (r + x), integrated over the rate."""
        none_if_alive = ((self.alpha + s.age) / (self.alpha + s.age + t)) ** (self.r + s.frequency)
        return self.p_alive(s) * (1 - none_if_alive)


def log_likelihood(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Per customer (the paper's equation 6, in lifetimes' arrangement)."""
    from scipy.special import gammaln

    r, alpha, a, b = params
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + T)
    a4 = np.where(x > 0, np.log(a) - np.log(b + np.maximum(x, 1) - 1) - (r + x) * np.log(t_x + alpha), -np.inf)
    return a1 + a2 + np.logaddexp(a3, a4)


def fit_bgnbd(s: Summary) -> BGNBD:
    """Maximum likelihood over log-parameters (Nelder-Mead, then BFGS from its optimum)."""
    from scipy.optimize import minimize

    # Customers with the same (x, t_x, T) share a likelihood: each distinct history is evaluated
    # once and weighted by how many have it (whole days make most histories repeat).
    rows, weight = np.unique(np.column_stack([s.frequency, s.recency, s.age]), axis=0, return_counts=True)
    x, t_x, T = rows[:, 0], rows[:, 1], rows[:, 2]
    weight = weight / weight.sum()
    scale = max(float(T.max()), 1.0) / 10.0  # start near the data's own time scale

    def loss(log_params: np.ndarray) -> float:
        return -float(weight @ log_likelihood(np.exp(log_params), x, t_x, T))

    start = np.log([1.0, scale, 1.0, 1.0])
    coarse = minimize(loss, start, method="Nelder-Mead", options={"maxiter": 4000, "xatol": 1e-8, "fatol": 1e-12})
    fine = minimize(loss, coarse.x, method="BFGS", options={"gtol": 1e-10})
    best = fine.x if fine.fun <= coarse.fun else coarse.x
    return BGNBD(*map(float, np.exp(best)))


def hyp2f1(a, b, c, z, terms: int = 400) -> np.ndarray:
    """Gauss's hypergeometric series 2F1(a, b; c; z) for 0 <= z < 1, summed term by term until
    the terms vanish (z here is t / (alpha + T + t): below 1, and the series converges)."""
    a, b, c, z = np.broadcast_arrays(*(np.asarray(v, np.float64) for v in (a, b, c, z)))
    total = np.ones(a.shape)
    term = np.ones(a.shape)
    for k in range(terms):
        term = term * (a + k) * (b + k) / ((c + k) * (k + 1)) * z
        total = total + term
        if np.all(np.abs(term) <= 1e-14 * np.abs(total)):
            break
    return total
