"""Shared pieces of the CLV models: parameter and fit records, errors, data checks, the optimiser.

See cdp/traits/clv_model.py for the models and their references.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize

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
