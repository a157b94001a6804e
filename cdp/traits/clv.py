"""CLV and churn traits: BG/NBD + Gamma-Gamma fits on the customer summaries, stored predictions.

The summaries (:mod:`cdp.traits.clv_summary`) come from the orders, or from the order facts
that ``cdp traits compute`` has just stored (``from_facts``). The maths lives in
:mod:`cdp.traits.clv_model`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa

from cdp.errors import InvalidInputError, NotFoundError
from cdp.traits import clv_model as cm
from cdp.traits.bulk import bulk_insert
from cdp.traits.clv_summary import Summary as Summary
from cdp.traits.clv_summary import day_end as day_end
from cdp.traits.clv_summary import summary as summary
from cdp.traits.config import ClvConfig
from cdp.traits.eligibility import marketing_allowed
from cdp.traits.models import ClvFit, ClvPrediction
from cdp.traits.recompute_lock import drop_orphans, step_lock

fits_t = ClvFit.__table__  # type: ignore[attr-defined]
predictions_t = ClvPrediction.__table__  # type: ignore[attr-defined]
FloatArray = npt.NDArray[np.float64]
MAX_HORIZON_WEEKS = 520
"""The longest CLV horizon (ten years): the model says nothing useful past it."""
PREDICTION_COLUMNS = [
    "subject_id",
    "expected_purchases",
    "p_alive",
    "churn_probability",
    "churn_flag",
    "clv",
    "clv_quantile",
]


@dataclass(frozen=True)
class FitResult:
    fit_id: int
    calibration_end: date
    bgnbd: cm.BgNbdFit
    gamma_gamma: cm.GammaGammaFit | None
    gamma_gamma_error: str | None
    #: Where the summaries came from: ``facts`` (the last traits run) or ``orders``.
    source: str = "orders"

    def to_dict(self) -> dict[str, Any]:
        return {
            "fit_id": self.fit_id,
            "calibration_end": self.calibration_end.isoformat(),
            "summary_source": self.source,
            "bg_nbd": self.bgnbd.to_dict(),
            "gamma_gamma": self.gamma_gamma.to_dict() if self.gamma_gamma else None,
            "gamma_gamma_error": self.gamma_gamma_error,
        }


def fit(
    conn: sa.Connection, *, calibration_end: date, now: datetime, from_facts: bool = False
) -> FitResult:
    """Fit both models on the summaries up to ``calibration_end`` and store the fit
    (``from_facts``: from the stored order facts when they apply, see :func:`summary`)."""
    if calibration_end >= now.astimezone(UTC).date():
        raise InvalidInputError(
            "the calibration end must be a past day (at most yesterday): customer ages would "
            "count days that have not happened",
            field="calibration_end",
        )
    s = summary(conn, calibration_end=calibration_end, from_facts=from_facts)
    try:
        bg = cm.fit_bgnbd(frequency=s.frequency, recency=s.recency, age=s.age)
    except cm.ModelFitError as exc:
        raise InvalidInputError(f"BG/NBD cannot be fitted: {exc}", field="orders") from exc
    gg: cm.GammaGammaFit | None = None
    gg_error = None
    # Repeat buyers whose repeat purchases were worth nothing (free orders) carry no spend the
    # Gamma-Gamma likelihood can use (it models positive amounts): the fit leaves them out
    # instead of failing for the whole shop; their CLV still comes from the fitted model.
    spendless = (s.frequency > 0) & ~(s.mean_spend > 0)
    try:
        gg = cm.fit_gamma_gamma(
            frequency=np.where(spendless, 0.0, s.frequency), mean_spend=s.mean_spend
        )
    except cm.ModelFitError as exc:
        gg_error = str(exc)
    values: dict[str, Any] = {
        "fitted_at": now,
        "calibration_end": datetime.combine(calibration_end, time(0), tzinfo=UTC),
        **bg.params.to_dict(),
        "bgnbd_log_likelihood": bg.log_likelihood,
        "bgnbd_converged": bg.converged,
        "n_customers": bg.n_customers,
        "n_repeat_customers": int((s.frequency > 0).sum()),
    }
    if gg is not None:
        values.update(gg.params.to_dict())
        values.update(gg_log_likelihood=gg.log_likelihood, gg_converged=gg.converged)
    fit_id = conn.execute(sa.insert(fits_t).values(**values).returning(fits_t.c.id)).scalar_one()
    return FitResult(int(fit_id), calibration_end, bg, gg, gg_error, s.source)


def latest_fit(conn: sa.Connection) -> sa.Row[Any]:
    row = conn.execute(sa.select(fits_t).order_by(fits_t.c.id.desc()).limit(1)).first()
    if row is None:
        raise NotFoundError("no CLV fit yet: run `cdp clv fit`")
    return row


def quantiles(values: FloatArray) -> npt.NDArray[np.int64]:
    """1-5 by the RFM tie rule: 1 + floor(5 * (values strictly lower) / n); 0 where NaN."""
    out = np.zeros(values.shape, dtype=np.int64)
    ok = np.isfinite(values)
    finite = np.sort(values[ok])
    if finite.size:
        lower = np.searchsorted(finite, values[ok], side="left")
        out[ok] = 1 + (5 * lower) // finite.size
    return out


def predict(
    conn: sa.Connection,
    *,
    cfg: ClvConfig,
    now: datetime,
    horizon_weeks: float | None = None,
    from_facts: bool = False,
) -> int:
    """Store expected purchases, P(alive), churn and CLV of every buyer, from the latest fit,
    on the summaries up to the end of yesterday (``now``'s day; ``from_facts`` as for
    :func:`fit`). Returns the number of subjects stored. The summaries are read under the
    step's lock (:mod:`cdp.traits.recompute_lock`), so no merge or erasure falls between them
    and the write."""
    horizon = cfg.horizon_weeks if horizon_weeks is None else horizon_weeks
    if not 0 < horizon <= MAX_HORIZON_WEEKS:
        raise InvalidInputError(
            f"horizon must be more than 0 and at most {MAX_HORIZON_WEEKS} weeks", field="horizon"
        )
    f = latest_fit(conn)
    today = now.astimezone(UTC).date()
    with step_lock(conn, predictions_t):
        # Orders of today are not complete yet: the summary runs to the end of yesterday.
        s = summary(conn, calibration_end=today - timedelta(days=1), from_facts=from_facts)
        rows = _predictions(f, s, cfg, horizon)
        conn.execute(sa.delete(predictions_t))
        bulk_insert(
            conn,
            predictions_t,
            PREDICTION_COLUMNS,
            rows,
            constants={"fit_id": f.id, "computed_at": now, "horizon_weeks": float(horizon)},
        )
        # none expected (the summary was read under the lock): a guard for the rows copied in
        drop_orphans(conn, predictions_t)
    return len(s.subject_ids)


def drop_ineligible(conn: sa.Connection) -> int:
    """Delete the stored predictions of subjects who may not be profiled now (an open
    restriction, or ``analytics`` withdrawn: :mod:`cdp.traits.eligibility`); returns how many.
    :func:`predict` leaves them out of the rows it writes, but a run that stores no predictions
    (``cdp traits compute --no-clv``, or CLV skipped because the data carry no fit) would
    otherwise keep theirs from an earlier run, so every traits run calls this."""
    with step_lock(conn, predictions_t):
        gone = conn.execute(
            sa.delete(predictions_t).where(~marketing_allowed(predictions_t.c.subject_id))
        )
    return int(gone.rowcount or 0)


def _predictions(
    f: sa.Row[Any], s: Summary, cfg: ClvConfig, horizon: float
) -> Iterator[tuple[Any, ...]]:
    """The prediction rows (:data:`PREDICTION_COLUMNS`) of the summaries ``s`` under fit
    ``f``."""
    bg = cm.BgNbdParams(r=f.r, alpha=f.alpha, a=f.a, b=f.b)
    x, tx, big_t = s.frequency, s.recency, s.age
    try:
        expected = cm.bgnbd_conditional_expected_purchases(
            bg, t=horizon, frequency=x, recency=tx, age=big_t
        )
        p_alive = cm.bgnbd_probability_alive(bg, frequency=x, recency=tx, age=big_t)
        clv: FloatArray = np.full(s.frequency.shape, np.nan)
        if f.p is not None and f.q is not None and f.gamma is not None and f.q > 1:
            gg = cm.GammaGammaParams(p=f.p, q=f.q, gamma=f.gamma)
            clv = cm.customer_lifetime_value(
                bg,
                gg,
                frequency=x,
                recency=tx,
                age=big_t,
                mean_spend=s.mean_spend,
                horizon_weeks=horizon,
                annual_discount_rate=cfg.annual_discount_rate,
            )
    except ValueError as exc:  # a fit at the edge of the parameter space (too few repeat buyers)
        raise InvalidInputError(
            f"CLV cannot be predicted from the latest fit ({exc}; fit {f.id}: "
            f"{f.n_repeat_customers} repeat buyers of {f.n_customers}); more repeat purchases "
            "make a usable fit",
            field="orders",
        ) from exc
    quint = quantiles(clv)
    churn = 1.0 - p_alive
    rows = zip(
        s.subject_ids,
        expected.tolist(),
        p_alive.tolist(),
        churn.tolist(),
        (churn >= cfg.churn_threshold).tolist(),
        np.where(np.isfinite(clv), clv, np.nan).tolist(),
        quint.tolist(),
        strict=True,
    )
    return ((sid, e, p, c, f, None if v != v else v, q or None) for sid, e, p, c, f, v, q in rows)
