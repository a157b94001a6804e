"""CLV through the SQL summary path: BG/NBD and Gamma-Gamma recover the parameters of data
simulated from the models, the summary is exact (so SQLite and PostgreSQL agree), and the
stored predictions are consistent."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import numpy.typing as npt
import pytest
import sqlalchemy as sa

from cdp.errors import InvalidInputError
from cdp.traits import clv
from cdp.traits import clv_model as cm
from cdp.traits.clv_simulate import simulate_bgnbd, simulate_gamma_gamma
from cdp.traits.config import ClvConfig
from cdp.traits.models import ClvPrediction
from tests.conftest import CdpEnv
from tests.traits.factories import OrderSpec, add_orders, make_subjects, subject_ids

CAL_END = date(2026, 3, 31)
TRUE_BG = (0.25, 4.0, 0.8, 2.5)
TRUE_GG = (6.0, 4.0, 16.0)
N = 6000


def _at(day: int, hour: int = 10) -> datetime:
    return datetime.combine(date(1970, 1, 1) + timedelta(days=day), time(hour), tzinfo=UTC)


def _simulated_shop(
    env: CdpEnv,
) -> tuple[
    list[str],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
]:
    """Insert orders realising simulated summaries; return ids and the summaries they imply."""
    rng = np.random.default_rng(2026)
    ages = rng.integers(20 * 7, 80 * 7, size=N) / 7.0
    sim = simulate_bgnbd(N, *TRUE_BG, ages, rng, time_step=1 / 7)
    # value_base as ingestion stores it: at most 4 decimals (money sums count them exactly)
    spend = np.round(simulate_gamma_gamma(sim.frequency, *TRUE_GG, rng), 4)
    end_day = (CAL_END - date(1970, 1, 1)).days
    ids = subject_ids(N, prefix=0x77)
    xs, txs, ts, ms = [], [], [], []
    specs: list[OrderSpec] = []
    for i, sid in enumerate(ids):
        big_t = round(sim.age[i] * 7)
        t_x = round(sim.recency[i] * 7)
        x = min(int(sim.frequency[i]), t_x)  # at most one repeat purchase day per day
        t_x = t_x if x > 0 else 0
        first = end_day - big_t
        specs.append(OrderSpec(sid, _at(first), 10.0))
        if x > 0:
            middle = rng.choice(np.arange(first + 1, first + t_x), size=x - 1, replace=False)
            for day in [*middle.tolist(), first + t_x]:
                specs.append(OrderSpec(sid, _at(int(day), 12), float(spend[i])))
        if i % 7 == 0:  # refunded orders and orders after the calibration end do not count
            specs.append(OrderSpec(sid, _at(first + 1, 8), 99.0, status="refunded"))
            specs.append(OrderSpec(sid, _at(end_day + 1, 0), 55.0))
        xs.append(x)
        txs.append(t_x / 7)
        ts.append(big_t / 7)
        ms.append(float(spend[i]) if x > 0 else np.nan)
    with env.runtime.data_engine.begin() as conn:
        make_subjects(conn, ids)
        add_orders(conn, specs)
    return ids, np.array(xs, float), np.array(txs), np.array(ts), np.array(ms)


def _standard_errors(
    ll: Callable[[npt.NDArray[np.float64]], float], theta: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Standard errors of the log-parameters from the observed information (numerical)."""
    k, h = theta.size, 1e-4
    hess = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            e_i, e_j = np.eye(k)[i] * h, np.eye(k)[j] * h
            hess[i, j] = (
                ll(theta + e_i + e_j)
                - ll(theta + e_i - e_j)
                - ll(theta - e_i + e_j)
                + ll(theta - e_i - e_j)
            ) / (4 * h * h)
    return np.sqrt(np.diag(np.linalg.inv(-hess)))


def test_summary_is_exact_and_fits_recover_parameters(cdp_env: CdpEnv) -> None:
    ids, x, tx, big_t, m = _simulated_shop(cdp_env)
    with cdp_env.runtime.data_engine.connect() as conn:
        s = clv.summary(conn, calibration_end=CAL_END)
    assert s.subject_ids == ids  # ordered by id
    np.testing.assert_array_equal(s.frequency, x)
    np.testing.assert_array_equal(s.recency, tx)
    np.testing.assert_array_equal(s.age, big_t)
    repeat = x > 0
    np.testing.assert_allclose(s.mean_spend[repeat], m[repeat], rtol=1e-9)
    assert np.isnan(s.mean_spend[~repeat]).all()

    with cdp_env.runtime.data_engine.begin() as conn:
        result = clv.fit(conn, calibration_end=CAL_END, now=datetime(2026, 4, 1, tzinfo=UTC))
    # Same numbers as fitting the exact summaries directly: the backend cannot change the fit.
    direct = cm.fit_bgnbd(frequency=x, recency=tx, age=big_t)
    got = np.array(list(result.bgnbd.params.to_dict().values()))
    np.testing.assert_allclose(got, list(direct.params.to_dict().values()), rtol=1e-6)
    assert result.bgnbd.converged and result.bgnbd.n_customers == N

    def bg_ll(theta: npt.NDArray[np.float64]) -> float:
        p = cm.BgNbdParams(*np.exp(theta))
        return float(cm.bgnbd_log_likelihood(p, frequency=x, recency=tx, age=big_t).sum())

    theta = np.log(got)
    se = _standard_errors(bg_ll, theta)
    assert (np.abs(theta - np.log(TRUE_BG)) < 4 * se).all(), (got, se)

    gg = result.gamma_gamma
    assert gg is not None and gg.converged and gg.n_repeat_customers == int(repeat.sum())
    gg_got = np.array(list(gg.params.to_dict().values()))

    def gg_ll(theta: npt.NDArray[np.float64]) -> float:
        p = cm.GammaGammaParams(*np.exp(theta))
        return float(cm.gamma_gamma_log_likelihood(p, frequency=x, mean_spend=m).sum())

    g_theta = np.log(gg_got)
    g_se = _standard_errors(gg_ll, g_theta)
    assert (np.abs(g_theta - np.log(TRUE_GG)) < 4 * g_se).all(), (gg_got, g_se)


def test_predictions_are_stored_consistently(cdp_env: CdpEnv) -> None:
    ids, x, tx, big_t, _ = _simulated_shop(cdp_env)
    now = datetime(2026, 4, 1, 8, tzinfo=UTC)  # predictions use the data up to yesterday
    cfg = ClvConfig(horizon_weeks=26, annual_discount_rate=0.1, churn_threshold=0.6)
    with cdp_env.runtime.data_engine.begin() as conn:
        fit = clv.fit(conn, calibration_end=CAL_END, now=now)
        n = clv.predict(conn, cfg=cfg, now=now)
    assert n == N
    t = ClvPrediction.__table__  # type: ignore[attr-defined]
    with cdp_env.runtime.data_engine.connect() as conn:
        rows = conn.execute(sa.select(t).order_by(t.c.subject_id)).mappings().all()
    assert [r["subject_id"] for r in rows] == ids
    p = fit.bgnbd.params
    alive = cm.bgnbd_probability_alive(p, frequency=x, recency=tx, age=big_t)
    expected = cm.bgnbd_conditional_expected_purchases(p, t=26, frequency=x, recency=tx, age=big_t)
    np.testing.assert_allclose([r["p_alive"] for r in rows], alive, rtol=1e-9)
    np.testing.assert_allclose([r["expected_purchases"] for r in rows], expected, rtol=1e-9)
    for r in rows:
        assert r["churn_probability"] == pytest.approx(1 - r["p_alive"])
        assert r["churn_flag"] == (r["churn_probability"] >= 0.6)
        assert r["clv"] is not None and r["clv"] >= 0
        assert 1 <= r["clv_quantile"] <= 5
    clvs = np.array([r["clv"] for r in rows])
    quint = np.array([r["clv_quantile"] for r in rows])
    assert clvs[quint == 5].min() >= clvs[quint == 4].max()
    assert abs((quint == 5).mean() - 0.2) < 0.01


def test_quantiles_tie_rule() -> None:
    values = np.array([1.0, 1.0, 1.0, 2.0, 3.0, np.nan])
    assert clv.quantiles(values).tolist() == [1, 1, 1, 4, 5, 0]


def test_repeat_orders_worth_nothing_do_not_switch_clv_off(cdp_env: CdpEnv) -> None:
    """A customer whose repeat orders were free carries no spend the Gamma-Gamma fit can use;
    it used to fail the fit, leaving every buyer of the shop without a CLV."""
    ids, *_ = _simulated_shop(cdp_env)
    free = subject_ids(1, prefix=0x78)[0]
    end_day = (CAL_END - date(1970, 1, 1)).days
    with cdp_env.runtime.data_engine.begin() as conn:
        make_subjects(conn, [free])
        add_orders(conn, [OrderSpec(free, _at(end_day - 30 - k), 0.0) for k in (0, 10, 20)])
    now = datetime(2026, 4, 1, 8, tzinfo=UTC)
    with cdp_env.runtime.data_engine.begin() as conn:
        fit = clv.fit(conn, calibration_end=CAL_END, now=now)
        clv.predict(conn, cfg=ClvConfig(horizon_weeks=26), now=now)
    assert fit.gamma_gamma is not None, fit.gamma_gamma_error
    t = ClvPrediction.__table__  # type: ignore[attr-defined]
    with cdp_env.runtime.data_engine.connect() as conn:
        values = dict(conn.execute(sa.select(t.c.subject_id, t.c.clv)).all())
    assert len(values) == len(ids) + 1
    assert all(v is not None and v >= 0 for v in values.values())
    # its expected spend is the population's shrunk towards what it spent (nothing)
    gg = fit.gamma_gamma.params
    spend = cm.gamma_gamma_expected_spend(gg, frequency=2, mean_spend=0.0)
    assert 0 < float(spend) < gg.p * gg.gamma / (gg.q - 1)
    assert np.isfinite(values[free]) and values[free] > 0


@pytest.mark.parametrize("days_ahead", [0, 1, 3650])
def test_a_calibration_end_that_is_not_past_is_refused(cdp_env: CdpEnv, days_ahead: int) -> None:
    now = datetime(2026, 4, 1, 8, tzinfo=UTC)
    with (
        cdp_env.runtime.data_engine.begin() as conn,
        pytest.raises(InvalidInputError, match="past day"),
    ):
        clv.fit(conn, calibration_end=date(2026, 4, 1) + timedelta(days=days_ahead), now=now)


@pytest.mark.parametrize("horizon", [0.0, -1.0, float("inf"), float("nan"), 1e308, 521.0])
def test_a_horizon_outside_ten_years_is_refused(cdp_env: CdpEnv, horizon: float) -> None:
    with (
        cdp_env.runtime.data_engine.begin() as conn,
        pytest.raises(InvalidInputError, match="horizon"),
    ):
        clv.predict(
            conn, cfg=ClvConfig(), now=datetime(2026, 4, 1, tzinfo=UTC), horizon_weeks=horizon
        )
