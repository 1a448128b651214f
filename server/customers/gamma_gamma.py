"""The Gamma-Gamma model of spend per purchase (Fader, Hardie and Lee, "RFM and CLV", 2005): a
customer's purchases are Gamma(p, nu) with nu ~ Gamma(q, gamma) across customers; fitted by
maximum likelihood on the customers with repeat purchases (their count and mean spend), as
`lifetimes` fits it, and read as each customer's expected spend per purchase."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .rfm import Summary


MIN_REPEAT_SPENDERS = 10


@dataclass(frozen=True)
class GammaGamma:
    p: float
    q: float
    v: float

    def expected_spend(self, s: Summary) -> np.ndarray:
        """E[spend per purchase | history]; without repeat purchases, the population mean."""
        p, q, v = self.p, self.q, self.v
        x, m = s.frequency, s.monetary
        population = p * v / (q - 1)
        return np.where(x > 0, (p * (v + x * m)) / (p * x + q - 1), population)


def fit_gamma_gamma(s: Summary) -> GammaGamma:
    from scipy.optimize import minimize
    from scipy.special import gammaln

    repeat = (s.frequency > 0) & (s.monetary > 0)
    if repeat.sum() < MIN_REPEAT_SPENDERS:
        raise ValueError(f"{int(repeat.sum())} customers bought again with a spend; Gamma-Gamma needs "
                         f"{MIN_REPEAT_SPENDERS} (the purchases need an amount, or a price)")
    x, m = s.frequency[repeat], s.monetary[repeat]

    def loss(log_params: np.ndarray) -> float:
        p, q, v = np.exp(log_params)
        ll = (gammaln(p * x + q) - gammaln(p * x) - gammaln(q) + q * np.log(v) + (p * x - 1) * np.log(m)
              + (p * x) * np.log(x) - (p * x + q) * np.log(x * m + v))
        return -float(np.mean(ll))

    start = np.log([1.0, 1.0, max(float(np.median(m)), 1.0)])
    coarse = minimize(loss, start, method="Nelder-Mead", options={"maxiter": 4000, "xatol": 1e-8, "fatol": 1e-12})
    fine = minimize(loss, coarse.x, method="BFGS", options={"gtol": 1e-10})
    best = fine.x if fine.fun <= coarse.fun else coarse.x
    fitted = GammaGamma(*map(float, np.exp(best)))
    if fitted.q <= 1:
        raise ValueError(f"Gamma-Gamma's fit has no finite mean spend (q = {fitted.q:.3f} <= 1)")
    return fitted
