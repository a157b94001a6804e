"""Customer lifetime value mathematics: BG/NBD purchases, Gamma-Gamma spend, discounted CLV.

Pure numpy/scipy, no database: the traits module computes each customer's summary in SQL
(frequency x = repeat purchase days, recency t_x and age T in weeks from the first purchase,
mean spend per repeat purchase day) and hands the arrays here.

* BG/NBD (Fader, Hardie & Lee 2005, "Counting Your Customers the Easy Way", Marketing Science
  24(2)): repeat purchases of a customer who may lapse after any repeat purchase.
* Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV", J. Marketing Research 42(4); Fader &
  Hardie 2013, note 025): the value of a purchase, independent of its timing.

Every likelihood is written in log space (gammaln/betaln/logaddexp) so counts in the hundreds
and ages in the hundreds of weeks stay finite, and the fits aggregate identical summaries with
weights and reuse per-value terms (x, t_x and T each take few distinct values in real data).
docs/clv.md gives the formulas and how to read the numbers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1

FloatArray = npt.NDArray[np.float64]

WEEKS_PER_YEAR: Final = 365.25 / 7
WEEKS_PER_MONTH: Final = WEEKS_PER_YEAR / 12
# Log-parameters are kept in [-BOUND, BOUND]; a fit that ends on the bound has not converged.
_LOG_BOUND: Final = 25.0
# Largest gradient (of the mean log-likelihood per customer, in log-parameters) at an optimum.
_GRADIENT_TOLERANCE: Final = 1e-5
# Closer than this to a removable singularity of eq. 10, the expectation is interpolated.
_SINGULAR_GAP: Final = 1e-4


class ModelFitError(Exception):
    """The data cannot support the fit (empty, invalid, non-finite, or without repeat buyers),
    or the fitted model cannot give the requested quantity."""


@dataclass(frozen=True, slots=True)
class BgNbdParams:
    """BG/NBD parameters: purchase rate lambda ~ Gamma(shape r, rate alpha) per week, lapse
    probability after each repeat purchase p ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float

    def __post_init__(self) -> None:
        _check_positive(self.to_dict())

    def to_dict(self) -> dict[str, float]:
        """The parameters by name, for JSON."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class GammaGammaParams:
    """Gamma-Gamma parameters: a purchase's value ~ Gamma(shape p, rate nu), with the
    customer's nu ~ Gamma(shape q, rate gamma)."""

    p: float
    q: float
    gamma: float

    def __post_init__(self) -> None:
        _check_positive(self.to_dict())

    def to_dict(self) -> dict[str, float]:
        """The parameters by name, for JSON."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class BgNbdFit:
    """A maximum-likelihood BG/NBD fit: total log-likelihood over n_customers, and whether the
    optimiser stopped at an interior point with a vanishing gradient."""

    params: BgNbdParams
    log_likelihood: float
    n_customers: int
    converged: bool
    iterations: int

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view of the fit."""
        return {"model": "bg_nbd", **asdict(self)}


@dataclass(frozen=True, slots=True)
class GammaGammaFit:
    """A maximum-likelihood Gamma-Gamma fit. Only the n_repeat_customers with x >= 1 (of the
    n_customers given) carry information on spend; log_likelihood is their total."""

    params: GammaGammaParams
    log_likelihood: float
    n_customers: int
    n_repeat_customers: int
    converged: bool
    iterations: int

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view of the fit."""
        return {"model": "gamma_gamma", **asdict(self)}


def _check_positive(values: dict[str, float]) -> None:
    for name, value in values.items():
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"parameter {name} must be finite and > 0, got {value!r}")


def _group_rows(*columns: FloatArray) -> tuple[FloatArray, npt.NDArray[np.intp], FloatArray]:
    """Distinct rows of the given columns, each row's index among them, and their counts, as
    np.unique(axis=0) gives them but several times faster: each column is coded by its rank
    and the codes are folded into one integer key (compressed after each column, so the key
    stays below n^2)."""
    key = np.zeros(columns[0].size, dtype=np.int64)
    for column in columns:
        values, codes = np.unique(column, return_inverse=True)
        _, key = np.unique(key * values.size + codes.reshape(-1), return_inverse=True)
    _, first, inverse, counts = np.unique(
        key, return_index=True, return_inverse=True, return_counts=True
    )
    rows = np.stack(columns, axis=1)[first]
    return rows, inverse.reshape(-1), counts.astype(np.float64)


def _wsum(weight: FloatArray, values: FloatArray) -> float:
    """Weighted sum without BLAS: a threaded dot product stalls on a busy shared machine."""
    return float(np.sum(weight * values))


def _summary(
    frequency: npt.ArrayLike,
    recency: npt.ArrayLike,
    age: npt.ArrayLike,
    error: type[Exception],
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Broadcast and check (x, t_x, T): finite, x a whole number >= 0, 0 <= t_x <= T, and
    t_x == 0 when x == 0. Raises `error` naming the first broken rule."""
    x, tx, big_t = (
        np.asarray(v, dtype=np.float64) for v in np.broadcast_arrays(frequency, recency, age)
    )
    if not (np.isfinite(x).all() and np.isfinite(tx).all() and np.isfinite(big_t).all()):
        raise error("frequency, recency and age must be finite")
    if (x < 0).any() or (x != np.round(x)).any():
        raise error("frequency must be a whole number >= 0")
    if (tx < 0).any() or (tx > big_t).any():
        raise error("recency must satisfy 0 <= recency <= age")
    if (tx[x == 0] != 0).any():
        raise error("recency must be 0 for customers without repeat purchases")
    return x, tx, big_t


def _optimise(objective: _Objective, start: FloatArray) -> tuple[FloatArray, float, bool, int]:
    """Minimise the mean negative log-likelihood over log-parameters by BFGS with the analytic
    gradient (L-BFGS-B's small LAPACK calls stall on a busy machine's BLAS threads). Steps are
    clipped to |log-parameter| <= _LOG_BOUND; converged means an interior optimum where the
    gradient vanishes."""

    def clipped(theta: FloatArray) -> tuple[float, FloatArray]:
        return objective(np.clip(theta, -_LOG_BOUND, _LOG_BOUND))

    options = {"maxiter": 2000, "gtol": 1e-9}
    res = minimize(clipped, start, jac=True, method="BFGS", options=options)
    theta = np.clip(np.asarray(res.x, dtype=np.float64), -_LOG_BOUND, _LOG_BOUND)
    value, grad = objective(theta)
    if not (math.isfinite(value) and np.isfinite(grad).all()):
        raise ModelFitError("the likelihood is not finite at the optimum")
    interior = bool((np.abs(theta) < _LOG_BOUND - 1e-6).all())
    converged = interior and float(np.max(np.abs(grad))) < _GRADIENT_TOLERANCE
    return theta, -float(value) * objective.n, converged, int(res.nit)


class _Objective(Protocol):
    """Mean negative log-likelihood and its gradient in log-parameters, over n customers."""

    n: int

    def __call__(self, theta: FloatArray) -> tuple[float, FloatArray]: ...


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
    frequency: npt.ArrayLike, mean_spend: npt.ArrayLike, error: type[Exception]
) -> tuple[FloatArray, FloatArray]:
    """Broadcast (x, m); m must be finite and > 0 wherever x >= 1 and is ignored elsewhere."""
    x, m = (np.asarray(v, dtype=np.float64) for v in np.broadcast_arrays(frequency, mean_spend))
    if not np.isfinite(x).all() or (x < 0).any() or (x != np.round(x)).any():
        raise error("frequency must be a finite whole number >= 0")
    repeat = x > 0
    if not (np.isfinite(m[repeat]).all() and (m[repeat] > 0).all()):
        raise error("mean spend must be finite and > 0 for customers with repeat purchases")
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
    (else the fitted spend has no finite mean: ModelFitError)."""
    if params.q <= 1:
        raise ModelFitError(f"q = {params.q:.4g} <= 1: the fitted spend has no finite mean")
    x, m = _spend_summary(frequency, mean_spend, ValueError)
    p, q, gamma = params.p, params.q, params.gamma
    return np.asarray((gamma + m * x) * p / (p * x + q - 1), dtype=np.float64)


def customer_lifetime_value(
    purchases: BgNbdParams,
    spend: GammaGammaParams,
    *,
    frequency: npt.ArrayLike,
    recency: npt.ArrayLike,
    age: npt.ArrayLike,
    mean_spend: npt.ArrayLike,
    horizon_weeks: float,
    annual_discount_rate: float,
    period_weeks: float = WEEKS_PER_MONTH,
) -> FloatArray:
    """Discounted expected spend of each customer over the next horizon_weeks:

    CLV = sum_k E[M | x, m] (E[Y(tau_k) | x, t_x, T] - E[Y(tau_(k-1)) | x, t_x, T])
                            / (1 + annual_discount_rate)^(tau_k / WEEKS_PER_YEAR),
    tau_k = min(k period_weeks, horizon_weeks), k = 1..ceil(horizon_weeks / period_weeks):
    each period's expected purchases are valued at the Gamma-Gamma expected spend and
    discounted from the period's end (as lifetimes' customer_lifetime_value does with a
    monthly rate). Future purchases only: value already spent is not included."""
    if not (math.isfinite(horizon_weeks) and horizon_weeks >= 0):
        raise ValueError("horizon_weeks must be finite and >= 0")
    if not (math.isfinite(period_weeks) and period_weeks > 0):
        raise ValueError("period_weeks must be finite and > 0")
    if not (math.isfinite(annual_discount_rate) and annual_discount_rate > -1):
        raise ValueError("annual_discount_rate must be finite and > -1")
    arrays = np.broadcast_arrays(*(np.asarray(v) for v in (frequency, recency, age, mean_spend)))
    x, tx, big_t = _summary(arrays[0], arrays[1], arrays[2], ValueError)
    value = gamma_gamma_expected_spend(spend, frequency=x, mean_spend=arrays[3])
    steps = math.ceil(horizon_weeks / period_weeks - 1e-9)
    tau = np.minimum(np.arange(1, steps + 1) * period_weeks, horizon_weeks)
    discount = (1.0 + annual_discount_rate) ** (-tau / WEEKS_PER_YEAR)
    rows, inverse, _ = _group_rows(x.ravel(), tx.ravel(), big_t.ravel())
    cumulative = bgnbd_conditional_expected_purchases(
        purchases, t=tau[None, :], frequency=rows[:, :1], recency=rows[:, 1:2], age=rows[:, 2:]
    )
    increments = np.diff(cumulative, axis=1, prepend=0.0)
    per_row = (increments * discount).sum(axis=1)
    return np.asarray(value * per_row[inverse].reshape(x.shape), dtype=np.float64)
