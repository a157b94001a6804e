"""Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV"): the value of a purchase, independent
of its timing; likelihood in log space.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.special import betaln, digamma

from cdp.traits.clv_common import (
    FloatArray,
    GammaGammaFit,
    GammaGammaParams,
    ModelFitError,
    _group_rows,
    _optimise,
    _wsum,
)


class _GammaGammaObjective:
    """Gamma-Gamma log-likelihood of a customer's mean spend m over x >= 1 purchases (FHL 2005b;
    Fader & Hardie 2013, note 025, eq. 1a), the mean being Gamma(px, x nu):

    LL = -lnB(px, q) + q ln(gamma) + (px-1) ln(m) + px ln(x) - (px+q) ln(gamma + x m).
    Terms in x alone are summed per distinct x; only ln(gamma + x m) is evaluated per row."""

    def __init__(self, x: FloatArray, m: FloatArray) -> None:
        self.n = x.size
        rows, self.inverse, self.weight = _group_rows(x, m)
        self.x, self.m = rows[:, 0], rows[:, 1]
        self.xm = self.x * self.m
        self.log_m = np.log(self.m)
        self.xu, self.ix = np.unique(self.x, return_inverse=True)
        self.log_xu = np.log(self.xu)
        self.weight_u = np.bincount(self.ix, weights=self.weight).astype(np.float64)
        self.total = float(self.weight.sum())
        self.sum_log_m = _wsum(self.weight, self.log_m)
        self.sum_x_log_m = _wsum(self.weight * self.x, self.log_m)

    def rows(self, theta: FloatArray) -> FloatArray:
        """Log-likelihood per distinct (x, m)."""
        p, q, gamma = np.exp(theta)
        pxu = p * self.xu
        front = (-betaln(pxu, q) + pxu * self.log_xu)[self.ix]
        px = p * self.x
        tail = q * math.log(gamma) + (px - 1) * self.log_m - (px + q) * np.log(gamma + self.xm)
        return np.asarray(front + tail, dtype=np.float64)

    def __call__(self, theta: FloatArray) -> tuple[float, FloatArray]:
        p, q, gamma = np.exp(theta)
        pxu, wu, w = p * self.xu, self.weight_u, self.weight
        log_den = np.log(gamma + self.xm)
        w_log_den, wx_log_den = _wsum(w, log_den), _wsum(w * self.x, log_den)
        ll = (
            _wsum(wu, -betaln(pxu, q) + pxu * self.log_xu)
            + self.total * q * math.log(gamma)
            + p * self.sum_x_log_m
            - self.sum_log_m
            - p * wx_log_den
            - q * w_log_den
        )
        psi_sum = digamma(pxu + q)
        d_p = _wsum(wu * self.xu, psi_sum - digamma(pxu) + self.log_xu)
        d_p += self.sum_x_log_m - wx_log_den
        d_q = _wsum(wu, psi_sum) + self.total * (math.log(gamma) - digamma(q)) - w_log_den
        d_gamma = self.total * q / gamma - _wsum(w, (p * self.x + q) / (gamma + self.xm))
        grad = np.array([d_p * p, d_q * q, d_gamma * gamma])
        return -ll / self.n, -grad / self.n


def _spend_summary(
    frequency: npt.ArrayLike,
    mean_spend: npt.ArrayLike,
    error: type[Exception],
    *,
    zero: bool = False,
) -> tuple[FloatArray, FloatArray]:
    """Broadcast (x, m); m must be finite and > 0 (``zero``: >= 0) wherever x >= 1 and is
    ignored elsewhere."""
    x, m = (np.asarray(v, dtype=np.float64) for v in np.broadcast_arrays(frequency, mean_spend))
    if not np.isfinite(x).all() or (x < 0).any() or (x != np.round(x)).any():
        raise error("frequency must be a finite whole number >= 0")
    repeat = x > 0
    positive = m[repeat] >= 0 if zero else m[repeat] > 0
    if not (np.isfinite(m[repeat]).all() and positive.all()):
        bound = ">= 0" if zero else "> 0"
        raise error(f"mean spend must be finite and {bound} for customers with repeat purchases")
    return x, np.where(repeat, m, 0.0)


def fit_gamma_gamma(
    *, frequency: npt.ArrayLike, mean_spend: npt.ArrayLike, start: GammaGammaParams | None = None
) -> GammaGammaFit:
    """Fit p, q, gamma by maximum likelihood on the customers with x >= 1; mean_spend is the
    mean value of their repeat purchases (ignored, and may be NaN, where x == 0). Raises
    ModelFitError on invalid data, when fewer than two customers made a repeat purchase, or
    when all their mean spends are equal (the spread is then not identified)."""
    x, m = _spend_summary(frequency, mean_spend, ModelFitError)
    repeat = x.ravel() > 0
    xr, mr = x.ravel()[repeat], m.ravel()[repeat]
    if xr.size < 2:
        raise ModelFitError("Gamma-Gamma needs at least two customers with repeat purchases")
    if np.ptp(mr) == 0:
        raise ModelFitError("every repeat buyer has the same mean spend: spread not identified")
    if start is None:
        # p = 1, q = 2 puts the population mean p gamma / (q - 1) at the observed mean.
        start = GammaGammaParams(p=1.0, q=2.0, gamma=float(mr.mean()))
    objective = _GammaGammaObjective(xr, mr)
    theta, ll, converged, nit = _optimise(objective, np.log([start.p, start.q, start.gamma]))
    p, q, gamma = (float(v) for v in np.exp(theta))
    return GammaGammaFit(GammaGammaParams(p, q, gamma), ll, x.size, xr.size, converged, nit)


def gamma_gamma_log_likelihood(
    params: GammaGammaParams, *, frequency: npt.ArrayLike, mean_spend: npt.ArrayLike
) -> FloatArray:
    """Each customer's Gamma-Gamma log-likelihood; 0 for customers without repeat purchases
    (they carry no information on spend)."""
    x, m = _spend_summary(frequency, mean_spend, ValueError)
    out = np.zeros(x.shape)
    repeat = x > 0
    if repeat.any():
        objective = _GammaGammaObjective(x[repeat], m[repeat])
        rows = objective.rows(np.log([params.p, params.q, params.gamma]))
        out[repeat] = rows[objective.inverse]
    return out


def gamma_gamma_expected_spend(
    params: GammaGammaParams, *, frequency: npt.ArrayLike, mean_spend: npt.ArrayLike
) -> FloatArray:
    """E[M | x, m]: expected value of a customer's future purchase (note 025, eq. 5), a
    weighted mean of the population mean p gamma / (q-1) and the customer's own mean m:
    (gamma + m x) p / (p x + q - 1). The population mean alone when x == 0. Needs q > 1
    (else the fitted spend has no finite mean: ModelFitError). A mean of 0 (repeat purchases
    worth nothing) is allowed here, unlike in the fit: the formula stays defined and shrinks
    the population mean towards it."""
    if params.q <= 1:
        raise ModelFitError(f"q = {params.q:.4g} <= 1: the fitted spend has no finite mean")
    x, m = _spend_summary(frequency, mean_spend, ValueError, zero=True)
    p, q, gamma = params.p, params.q, params.gamma
    return np.asarray((gamma + m * x) * p / (p * x + q - 1), dtype=np.float64)
