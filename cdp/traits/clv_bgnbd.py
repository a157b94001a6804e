"""BG/NBD (Fader, Hardie & Lee 2005, "Counting Your Customers the Easy Way"): repeat purchases
of a customer who may lapse after any repeat purchase; likelihood in log space.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import numpy.typing as npt
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1

from cdp.traits.clv_common import (
    _SINGULAR_GAP,
    BgNbdFit,
    BgNbdParams,
    FloatArray,
    ModelFitError,
    _group_rows,
    _optimise,
    _summary,
    _wsum,
)


class _BgNbdObjective:
    """BG/NBD log-likelihood (FHL 2005, eq. 6) over aggregated summaries:

    LL = lnG(r+x) - lnG(r) + r ln(alpha) + logaddexp(A, B),
    A = lnB(a, b+x) - lnB(a, b) - (r+x) ln(alpha+T),
    B = lnB(a+1, b+x-1) - lnB(a, b) - (r+x) ln(alpha+t_x)   (only when x > 0).
    Terms depending on one of x, t_x, T are computed once per distinct value."""

    def __init__(self, x: FloatArray, tx: FloatArray, big_t: FloatArray) -> None:
        self.n = x.size
        rows, self.inverse, self.weight = _group_rows(x, tx, big_t)
        self.xu, self.ix = np.unique(rows[:, 0], return_inverse=True)
        self.tu, self.it = np.unique(rows[:, 1], return_inverse=True)
        self.big_tu, self.ibig_t = np.unique(rows[:, 2], return_inverse=True)
        self.repeat = self.xu > 0
        self.x = rows[:, 0]

    def rows(self, theta: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Per distinct summary: log-likelihood, A and B (B = -inf when x == 0)."""
        r, alpha, a, b = np.exp(theta)
        xu, ix = self.xu, self.ix
        lb_ab = betaln(a, b)
        beta_b = np.full(xu.shape, -np.inf)
        beta_b[self.repeat] = betaln(a + 1, b + xu[self.repeat] - 1) - lb_ab
        front = (gammaln(r + xu) - gammaln(r) + r * np.log(alpha))[ix]
        shape = r + self.x
        big_a = (betaln(a, b + xu) - lb_ab)[ix] - shape * np.log(alpha + self.big_tu)[self.ibig_t]
        big_b = beta_b[ix] - shape * np.log(alpha + self.tu)[self.it]
        return front + np.logaddexp(big_a, big_b), big_a, big_b

    def __call__(self, theta: FloatArray) -> tuple[float, FloatArray]:
        r, alpha, a, b = np.exp(theta)
        ll, big_a, big_b = self.rows(theta)
        w_b = expit(big_b - big_a)  # share of the lapsed-at-t_x branch in each row's likelihood
        w_a = 1.0 - w_b
        xu, ix, shape, w = self.xu, self.ix, r + self.x, self.weight
        inv_t = 1.0 / (alpha + self.big_tu)[self.ibig_t]
        inv_tx = 1.0 / (alpha + self.tu)[self.it]
        d_r = (digamma(r + xu) - digamma(r) + np.log(alpha))[ix] - (
            w_a * np.log(alpha + self.big_tu)[self.ibig_t] + w_b * np.log(alpha + self.tu)[self.it]
        )
        d_alpha = r / alpha - shape * (w_a * inv_t + w_b * inv_tx)
        common = digamma(a + b) - digamma(a + b + xu)
        da_a, db_a = common, common + digamma(b + xu) - digamma(b)
        xr = np.where(self.repeat, xu, 1.0)
        da_b = common + 1.0 / a
        db_b = common + digamma(b + xr - 1) - digamma(b)
        d_a = w_a * da_a[ix] + w_b * da_b[ix]
        d_b = w_a * db_a[ix] + w_b * db_b[ix]
        grad = np.array([_wsum(w, d_r) * r, _wsum(w, d_alpha) * alpha, _wsum(w, d_a) * a])
        grad = np.append(grad, _wsum(w, d_b) * b)
        return -_wsum(w, ll) / self.n, -grad / self.n


def bgnbd_log_likelihood(
    params: BgNbdParams, *, frequency: npt.ArrayLike, recency: npt.ArrayLike, age: npt.ArrayLike
) -> FloatArray:
    """Each customer's BG/NBD log-likelihood (FHL 2005, eq. 6), in log space."""
    x, tx, big_t = _summary(frequency, recency, age, ValueError)
    objective = _BgNbdObjective(x.ravel(), tx.ravel(), big_t.ravel())
    theta = np.log([params.r, params.alpha, params.a, params.b])
    return objective.rows(theta)[0][objective.inverse].reshape(x.shape)


def fit_bgnbd(
    *,
    frequency: npt.ArrayLike,
    recency: npt.ArrayLike,
    age: npt.ArrayLike,
    start: BgNbdParams | None = None,
) -> BgNbdFit:
    """Fit r, alpha, a, b by maximum likelihood. Raises ModelFitError on invalid data, on
    empty input and when nobody made a repeat purchase (a and b are then not identified)."""
    x, tx, big_t = _summary(frequency, recency, age, ModelFitError)
    x, tx, big_t = x.ravel(), tx.ravel(), big_t.ravel()
    if x.size == 0:
        raise ModelFitError("no customers to fit")
    if not (x > 0).any():
        raise ModelFitError("no customer made a repeat purchase: BG/NBD cannot be fitted")
    if start is None:
        # lambda's mean r/alpha near the observed repeat rate; a neutral lapse prior.
        rate = float(x.sum() / max(big_t.sum(), 1e-9))
        start = BgNbdParams(r=1.0, alpha=1.0 / max(rate, 1e-6), a=1.0, b=1.0)
    objective = _BgNbdObjective(x, tx, big_t)
    theta, ll, converged, nit = _optimise(
        objective, np.log([start.r, start.alpha, start.a, start.b])
    )
    r, alpha, a, b = (float(v) for v in np.exp(theta))
    return BgNbdFit(BgNbdParams(r, alpha, a, b), ll, x.size, converged, nit)


def bgnbd_probability_alive(
    params: BgNbdParams, *, frequency: npt.ArrayLike, recency: npt.ArrayLike, age: npt.ArrayLike
) -> FloatArray:
    """P(alive | x, t_x, T) = 1 / (1 + [x>0] a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x))
    (Fader, Hardie & Lee 2008, note 021), via expit of the log-odds: exactly 1 when x == 0."""
    x, tx, big_t = _summary(frequency, recency, age, ValueError)
    return _p_alive(params, x, tx, big_t)


def _p_alive(p: BgNbdParams, x: FloatArray, tx: FloatArray, big_t: FloatArray) -> FloatArray:
    xr = np.maximum(x, 1.0)
    log_odds_dead = (
        math.log(p.a)
        - np.log(p.b + xr - 1)
        + (p.r + x) * (np.log(p.alpha + big_t) - np.log(p.alpha + tx))
    )
    return np.where(x > 0, expit(-log_odds_dead), 1.0)


def bgnbd_expected_purchases(params: BgNbdParams, *, t: npt.ArrayLike) -> FloatArray:
    """E[X(t)]: expected repeat purchases in the first t weeks of a new customer (FHL 2005,
    eq. 9); the conditional expectation below at x = t_x = T = 0."""
    t_arr = np.asarray(t, dtype=np.float64)
    zero = np.zeros_like(t_arr)
    return bgnbd_conditional_expected_purchases(
        params, t=t_arr, frequency=zero, recency=zero, age=zero
    )


def bgnbd_conditional_expected_purchases(
    params: BgNbdParams,
    *,
    t: npt.ArrayLike,
    frequency: npt.ArrayLike,
    recency: npt.ArrayLike,
    age: npt.ArrayLike,
) -> FloatArray:
    """E[Y(t) | x, t_x, T]: expected repeat purchases in the next t weeks (FHL 2005, eq. 10).

    The hypergeometric term of eq. 10 is taken in its Euler-transformed form
    ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; z)
        = (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z),  z = t/(alpha+T+t),
    whose parameters do not grow with x, so it stays in scipy's accurate range for large
    counts; the result is P(alive) times the alive customer's expectation."""
    t_arr = np.asarray(t, dtype=np.float64)
    if not np.isfinite(t_arr).all() or (t_arr < 0).any():
        raise ValueError("t must be finite and >= 0")
    x, tx, big_t = _summary(frequency, recency, age, ValueError)
    t_arr, x, tx, big_t = np.broadcast_arrays(t_arr, x, tx, big_t)
    return _regular_expectation(params, t_arr, x, tx, big_t)


def _regular_expectation(
    p: BgNbdParams, t: FloatArray, x: FloatArray, tx: FloatArray, big_t: FloatArray
) -> FloatArray:
    """Eq. 10 has removable singularities at a = 1 (0/0 in (a+b+x-1)/(a-1) times its bracket)
    and, when x = 0, at a + b = 1 (a pole of 2F1 times a zero). Within _SINGULAR_GAP of
    one, the expectation (smooth in a and b) is interpolated from 2 gaps either side."""
    if abs(p.a - 1.0) < _SINGULAR_GAP:
        centre, vary = 1.0, "a"
    elif abs(p.a + p.b - 1.0) < _SINGULAR_GAP and (x == 0).any() and p.a < 1 - 3 * _SINGULAR_GAP:
        centre, vary = 1.0 - p.a, "b"
    else:
        return _conditional_expectation(p, t, x, tx, big_t)
    lo_p, hi_p = (replace(p, **{vary: centre + s * _SINGULAR_GAP}) for s in (-2.0, 2.0))
    lo, hi = (_regular_expectation(q, t, x, tx, big_t) for q in (lo_p, hi_p))
    w_hi = (getattr(p, vary) - getattr(lo_p, vary)) / (getattr(hi_p, vary) - getattr(lo_p, vary))
    return np.asarray((1.0 - w_hi) * lo + w_hi * hi, dtype=np.float64)


def _hyp2f1(a: float, b: float, c: FloatArray, z: FloatArray) -> FloatArray:
    """scipy's 2F1, except where c - a - b is an exact integer: there scipy's connection
    formula for z > 0.9 breaks (inf, NaN or a wrong sign) while values 1e-14 away are right.
    2F1 is smooth in c, so those points take the mean of c -+ 1e-7 c (error ~1e-14)."""
    c, z = np.broadcast_arrays(c, z)
    out = np.array(hyp2f1(a, b, c, z), dtype=np.float64)
    excess = c - a - b
    bad = (excess == np.round(excess)) | ~np.isfinite(out)
    if bad.any():
        step = 1e-7 * np.maximum(np.abs(c[bad]), 1.0)
        below, above = hyp2f1(a, b, c[bad] - step, z[bad]), hyp2f1(a, b, c[bad] + step, z[bad])
        out[bad] = 0.5 * (below + above)
    return out


def _conditional_expectation(
    p: BgNbdParams, t: FloatArray, x: FloatArray, tx: FloatArray, big_t: FloatArray
) -> FloatArray:
    log_one_minus_z = np.log(p.alpha + big_t) - np.log(p.alpha + big_t + t)
    z = -np.expm1(log_one_minus_z)
    hyp = _hyp2f1(p.a + p.b - 1 - p.r, p.a - 1, p.a + p.b + x - 1, z)
    positive = hyp > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        exponent = (p.a - 1) * log_one_minus_z + np.log(np.where(positive, hyp, 1.0))
        # 1 - (1-z)^(a-1) 2F1(...), by expm1 so that it keeps its digits when it is small.
        bracket = np.where(
            positive, -np.expm1(exponent), 1.0 - np.exp((p.a - 1) * log_one_minus_z) * hyp
        )
    alive_mean = (p.a + p.b + x - 1) / (p.a - 1) * bracket
    result = _p_alive(p, x, tx, big_t) * np.where(t > 0, alive_mean, 0.0)
    if not np.isfinite(result).all():
        raise ValueError("expected purchases out of numerical range for these parameters")
    return np.asarray(result, dtype=np.float64)
