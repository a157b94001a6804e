"""CLV and churn traits: customer summaries in SQL, BG/NBD + Gamma-Gamma fits, stored predictions.

The summary of each buyer is computed in the database from completed orders up to the end of
the calibration day, in whole UTC days (so it is identical on SQLite and PostgreSQL), then
converted to weeks: frequency x = purchase occasions - 1 (repeat purchase days), recency
t_x = (last day - first day) / 7, age T = (calibration day - first day) / 7, and mean spend
per repeat occasion m = (total value - value of the first day) / x. The maths lives in
:mod:`cdp.traits.clv_model`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa

from cdp.errors import InvalidInputError, NotFoundError
from cdp.traits import clv_model as cm
from cdp.traits.bulk import bulk_insert, bulk_session
from cdp.traits.config import ClvConfig
from cdp.traits.eligibility import marketing_allowed
from cdp.traits.facts import subject_facts
from cdp.traits.models import ClvFit, ClvPrediction
from cdp.traits.sqlfuncs import python_day

fits_t = ClvFit.__table__  # type: ignore[attr-defined]
predictions_t = ClvPrediction.__table__  # type: ignore[attr-defined]
FloatArray = npt.NDArray[np.float64]
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
class Summary:
    """Per-buyer BG/NBD inputs (weeks) and mean repeat spend (NaN where x == 0)."""

    subject_ids: list[str]
    frequency: FloatArray
    recency: FloatArray
    age: FloatArray
    mean_spend: FloatArray


@dataclass(frozen=True)
class FitResult:
    fit_id: int
    calibration_end: date
    bgnbd: cm.BgNbdFit
    gamma_gamma: cm.GammaGammaFit | None
    gamma_gamma_error: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "fit_id": self.fit_id,
            "calibration_end": self.calibration_end.isoformat(),
            "bg_nbd": self.bgnbd.to_dict(),
            "gamma_gamma": self.gamma_gamma.to_dict() if self.gamma_gamma else None,
            "gamma_gamma_error": self.gamma_gamma_error,
        }


def day_end(day: date) -> datetime:
    """The first instant after ``day`` (UTC): orders before it belong to the day or earlier."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)


def summary_select(calibration_end: date, dialect: str = "sqlite") -> sa.Select[Any]:
    """Per allowed buyer up to the end of ``calibration_end``, in subject order: purchase
    occasions, first and last day, total value and the value of the first day."""
    facts = subject_facts(day_end(calibration_end), first_value=True, dialect=dialect)
    c = facts.selected_columns
    return (
        facts.with_only_columns(
            c.subject_id, c.occasions, c.first_day, c.last_day, c.total_value, c.first_value
        )
        .having(marketing_allowed(c.subject_id))
        .order_by(c.subject_id)
    )


def summary(conn: sa.Connection, *, calibration_end: date) -> Summary:
    """The summaries of every allowed buyer with a completed order on or before the day.

    One pass over the partial covering index of completed orders (grouped by subject, already
    in subject order) plus an index seek per buyer for the value of its first day; the rows
    are read through the driver (no per-value type processing: the columns are numbers) and
    turned into numpy arrays column by column."""
    with bulk_session(conn):
        rows = conn.execute(summary_select(calibration_end, conn.dialect.name)).all()
    end_day = python_day(calibration_end)
    cols: list[tuple[Any, ...]] = list(zip(*rows, strict=True)) if rows else [()] * 6
    ids = list(cols[0])
    occ, first, last, total, first_value = (np.array(c, dtype=np.float64) for c in cols[1:])
    x = occ - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_spend = np.where(x > 0, (total - first_value) / np.maximum(x, 1), np.nan)
    return Summary(ids, x, (last - first) / 7.0, (end_day - first) / 7.0, mean_spend)


def fit(conn: sa.Connection, *, calibration_end: date, now: datetime) -> FitResult:
    """Fit both models on the summaries up to ``calibration_end`` and store the fit."""
    s = summary(conn, calibration_end=calibration_end)
    try:
        bg = cm.fit_bgnbd(frequency=s.frequency, recency=s.recency, age=s.age)
    except cm.ModelFitError as exc:
        raise InvalidInputError(f"BG/NBD cannot be fitted: {exc}", field="orders") from exc
    gg: cm.GammaGammaFit | None = None
    gg_error = None
    try:
        gg = cm.fit_gamma_gamma(frequency=s.frequency, mean_spend=s.mean_spend)
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
    return FitResult(int(fit_id), calibration_end, bg, gg, gg_error)


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
    conn: sa.Connection, *, cfg: ClvConfig, now: datetime, horizon_weeks: float | None = None
) -> int:
    """Store expected purchases, P(alive), churn and CLV of every buyer, from the latest fit,
    on the summaries as of ``now``'s day. Returns the number of subjects stored."""
    horizon = cfg.horizon_weeks if horizon_weeks is None else horizon_weeks
    if not horizon > 0:
        raise InvalidInputError("horizon must be positive", field="horizon")
    f = latest_fit(conn)
    bg = cm.BgNbdParams(r=f.r, alpha=f.alpha, a=f.a, b=f.b)
    today = now.astimezone(UTC).date()
    s = summary(conn, calibration_end=today - timedelta(days=1))
    # Orders of today are not complete yet: the summary runs to the end of yesterday.
    x, tx, big_t = s.frequency, s.recency, s.age
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
    quint = quantiles(clv)
    churn = 1.0 - p_alive
    conn.execute(sa.delete(predictions_t))
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
    bulk_insert(
        conn,
        predictions_t,
        PREDICTION_COLUMNS,
        ((sid, e, p, c, f, None if v != v else v, q or None) for sid, e, p, c, f, v, q in rows),
        constants={"fit_id": f.id, "computed_at": now, "horizon_weeks": float(horizon)},
    )
    return len(s.subject_ids)
