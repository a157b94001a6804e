"""CLV predictions of subjects who may no longer be profiled (restricted, or an upheld objection
recorded as ``analytics`` withdrawn) are deleted by every ``cdp traits compute`` run, also one
that fits no CLV (``--no-clv``) or whose CLV step is skipped: they were left in place before."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from cdp.clock import FrozenClock
from cdp.privacy.restriction import restrict
from cdp.traits.compute import compute_traits
from cdp.traits.models import ClvFit, ClvPrediction
from tests.conftest import CdpEnv
from tests.traits.factories import (
    OrderSpec,
    add_consents,
    add_orders,
    make_subjects,
    subject_ids,
)

NOW = datetime(2026, 6, 1, 15, 30, tzinfo=UTC)
predictions_t = ClvPrediction.__table__  # type: ignore[attr-defined]
fits_t = ClvFit.__table__  # type: ignore[attr-defined]


def _predicted(env: CdpEnv) -> set[str]:
    with env.runtime.data_engine.connect() as conn:
        return set(conn.execute(sa.select(predictions_t.c.subject_id)).scalars())


def _shop(env: CdpEnv, ids: list[str], seed: int) -> None:
    rng = random.Random(seed)
    specs = []
    for sid in ids:
        for d in sorted(rng.sample(range(2, 300), rng.randint(1, 6))):
            specs.append(OrderSpec(sid, NOW - timedelta(days=d), round(rng.uniform(5, 200), 2)))
    with env.runtime.data_engine.begin() as conn:
        make_subjects(conn, ids)
        add_orders(conn, specs)


def test_a_run_without_clv_drops_the_predictions_of_subjects_no_longer_profiled(
    cdp_env: CdpEnv,
) -> None:
    rt = cdp_env.runtime
    ids = subject_ids(300, prefix=0xE1)
    _shop(cdp_env, ids, seed=5)
    report = compute_traits(runtime=rt, clock=FrozenClock(NOW))
    assert report.clv_skipped is None and report.clv_subjects == len(ids)
    assert _predicted(cdp_env) == set(ids)
    restricted, objected = ids[3], ids[7]
    with rt.data_engine.begin() as conn:
        restrict(conn=conn, subject_id=restricted, request_id=None)
        add_consents(conn, [(objected, "analytics", "withdrawn", NOW - timedelta(hours=1))])
    later = FrozenClock(NOW + timedelta(hours=1))
    report = compute_traits(runtime=rt, clock=later, with_clv=False)
    assert report.clv_subjects is None
    assert _predicted(cdp_env) == set(ids) - {restricted, objected}
    assert report.clv_removed == 2
    # the others keep the predictions of the earlier run
    again = compute_traits(runtime=rt, clock=later, with_clv=False)
    assert again.clv_removed == 0
    assert _predicted(cdp_env) == set(ids) - {restricted, objected}


def test_a_skipped_clv_step_drops_them_too(cdp_env: CdpEnv) -> None:
    """A shop that cannot carry the model (one repeat buyer): CLV is skipped, the stored
    predictions (of an earlier run, when the model could be fitted) of a subject who objected
    go all the same."""
    rt = cdp_env.runtime
    ids = subject_ids(40, prefix=0xE2)
    specs = [OrderSpec(sid, NOW - timedelta(days=10 + i), 20.0) for i, sid in enumerate(ids)]
    specs.append(OrderSpec(ids[0], NOW - timedelta(days=3), 35.0))
    with rt.data_engine.begin() as conn:
        make_subjects(conn, ids)
        add_orders(conn, specs)
        # what an earlier run stored when the shop's data still carried a fit
        fit_id = conn.execute(
            sa.insert(fits_t)
            .values(
                fitted_at=NOW - timedelta(days=1),
                calibration_end=NOW - timedelta(days=2),
                r=0.2,
                alpha=4.0,
                a=0.8,
                b=2.5,
                bgnbd_log_likelihood=-1.0,
                bgnbd_converged=True,
                n_customers=40,
                n_repeat_customers=10,
            )
            .returning(fits_t.c.id)
        ).scalar_one()
        conn.execute(
            sa.insert(predictions_t),
            [
                {
                    "subject_id": sid,
                    "fit_id": fit_id,
                    "computed_at": NOW - timedelta(days=1),
                    "horizon_weeks": 52.0,
                    "expected_purchases": 1.0,
                    "p_alive": 0.9,
                    "churn_probability": 0.1,
                    "churn_flag": False,
                    "clv": 100.0,
                    "clv_quantile": 3,
                }
                for sid in ids
            ],
        )
        add_consents(conn, [(ids[5], "analytics", "withdrawn", NOW - timedelta(hours=1))])
        restrict(conn=conn, subject_id=ids[6], request_id=None)
    report = compute_traits(runtime=rt, clock=FrozenClock(NOW))
    assert report.clv_skipped and report.clv_subjects is None
    assert _predicted(cdp_env) == set(ids) - {ids[5], ids[6]}
