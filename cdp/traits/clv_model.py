"""Customer lifetime value mathematics: BG/NBD purchases, Gamma-Gamma spend, discounted CLV.

This module is the public face; the models live in clv_bgnbd.py, clv_gamma_gamma.py and
clv_common.py, and the discounted CLV below combines them.

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

import numpy as np
import numpy.typing as npt

from cdp.traits.clv_bgnbd import (
    _BgNbdObjective,
    bgnbd_conditional_expected_purchases,
    bgnbd_expected_purchases,
    bgnbd_log_likelihood,
    bgnbd_probability_alive,
    fit_bgnbd,
)
from cdp.traits.clv_common import (
    WEEKS_PER_MONTH,
    WEEKS_PER_YEAR,
    BgNbdFit,
    BgNbdParams,
    FloatArray,
    GammaGammaFit,
    GammaGammaParams,
    ModelFitError,
    _group_rows,
    _summary,
)
from cdp.traits.clv_gamma_gamma import (
    _GammaGammaObjective,
    fit_gamma_gamma,
    gamma_gamma_expected_spend,
    gamma_gamma_log_likelihood,
)

__all__ = [
    "WEEKS_PER_MONTH",
    "WEEKS_PER_YEAR",
    "BgNbdFit",
    "BgNbdParams",
    "FloatArray",
    "GammaGammaFit",
    "GammaGammaParams",
    "ModelFitError",
    "_BgNbdObjective",
    "_GammaGammaObjective",
    "bgnbd_conditional_expected_purchases",
    "bgnbd_expected_purchases",
    "bgnbd_log_likelihood",
    "bgnbd_probability_alive",
    "customer_lifetime_value",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "gamma_gamma_expected_spend",
    "gamma_gamma_log_likelihood",
]


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
