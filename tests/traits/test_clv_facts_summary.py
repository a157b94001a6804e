"""The CLV summary read from the stored order facts equals the one read from the orders,
including buyers who ordered between midnight and the traits run (summarised again from their
own orders), buyers whose only orders are on that day, refunds, orders after the run and a
restriction placed after it; and the facts are only used when they apply."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa

from cdp.clock import FrozenClock
from cdp.privacy.restriction import restrict
from cdp.traits import clv, clv_summary
from cdp.traits.compute import compute_traits
from cdp.traits.models import ClvFit
from tests.conftest import CdpEnv
from tests.traits.factories import OrderSpec, add_orders, make_subjects, subject_ids

CAL_END = date(2026, 5, 31)
NOW = datetime(2026, 6, 1, 15, 30, tzinfo=UTC)  # the day after the calibration day


def _orders(ids: list[str], rng: random.Random) -> list[OrderSpec]:
    specs = []
    midnight = datetime.combine(CAL_END + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    for i, sid in enumerate(ids):
        if i % 7 == 0:  # only orders on the day of the run (before and after it)
            specs.append(OrderSpec(sid, midnight + timedelta(hours=1), 30.0))
            specs.append(OrderSpec(sid, NOW + timedelta(hours=1), 40.0))
            continue
        for d in sorted(rng.sample(range(1, 300), rng.randint(1, 6))):
            base = midnight - timedelta(days=d)
            for _ in range(rng.choice((1, 1, 2))):
                at = base + rng.choice(
                    (timedelta(0), timedelta(hours=13), timedelta(days=1, microseconds=-1))
                )
                status = rng.choice(("completed",) * 8 + ("refunded", "cancelled"))
                specs.append(OrderSpec(sid, at, round(rng.uniform(1, 200), 2), status))
        if i % 3 == 0:  # ordered again between midnight and the run
            specs.append(OrderSpec(sid, midnight + timedelta(hours=rng.randint(0, 15)), 25.0))
        if i % 5 == 0:  # and after it
            specs.append(OrderSpec(sid, NOW + timedelta(minutes=5), 60.0))
    return specs


def _assert_same(a: clv_summary.Summary, b: clv_summary.Summary) -> None:
    assert a.subject_ids == b.subject_ids
    np.testing.assert_array_equal(a.frequency, b.frequency)
    np.testing.assert_array_equal(a.recency, b.recency)
    np.testing.assert_array_equal(a.age, b.age)
    np.testing.assert_allclose(a.mean_spend, b.mean_spend, rtol=1e-12, equal_nan=True)


@pytest.mark.parametrize("seed", [3, 4])
def test_facts_summary_equals_orders_summary(cdp_env: CdpEnv, seed: int) -> None:
    rt = cdp_env.runtime
    ids = subject_ids(90, prefix=0xC1 + seed)
    with rt.data_engine.begin() as conn:
        make_subjects(conn, [*ids, *subject_ids(5, prefix=0xC0)])  # some without orders
        add_orders(conn, _orders(ids, random.Random(seed)))
    compute_traits(runtime=rt, clock=FrozenClock(NOW), with_clv=False)
    with rt.data_engine.begin() as conn:
        restrict(conn=conn, subject_id=ids[1], request_id=None)  # after the run
    with rt.data_engine.connect() as conn:
        from_orders = clv_summary.summary(conn, calibration_end=CAL_END)
        from_facts = clv_summary.summary(conn, calibration_end=CAL_END, from_facts=True)
    assert from_orders.source == "orders" and from_facts.source == "facts"
    assert ids[1] not in from_facts.subject_ids and ids[0] not in from_facts.subject_ids
    assert (from_facts.frequency > 0).any() and (from_facts.frequency == 0).any()
    _assert_same(from_facts, from_orders)


def test_facts_apply_only_to_the_day_before_the_run(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    ids = subject_ids(20, prefix=0xC9)
    with rt.data_engine.begin() as conn:
        make_subjects(conn, ids)
        add_orders(conn, _orders(ids, random.Random(9)))
    with rt.data_engine.connect() as conn:  # no traits yet
        assert clv_summary.facts_summary(conn, calibration_end=CAL_END) is None
    compute_traits(runtime=rt, clock=FrozenClock(NOW), with_clv=False)
    with rt.data_engine.connect() as conn:
        assert clv_summary.facts_summary(conn, calibration_end=CAL_END) is not None
        for other in (CAL_END - timedelta(days=1), CAL_END + timedelta(days=1)):
            assert clv_summary.facts_summary(conn, calibration_end=other) is None
            s = clv_summary.summary(conn, calibration_end=other, from_facts=True)
            assert s.source == "orders"
        # Rows without the first day's value (written before the column existed) do not serve.
        conn.execute(sa.text("UPDATE subject_traits SET first_day_value = NULL"))
        assert clv_summary.facts_summary(conn, calibration_end=CAL_END) is None
        conn.rollback()


def test_traits_run_fits_on_the_stored_facts(cdp_env: CdpEnv) -> None:
    """``cdp traits compute`` fits on the facts it stored: the same fit as from the orders."""
    rt = cdp_env.runtime
    ids = subject_ids(400, prefix=0xCA)
    with rt.data_engine.begin() as conn:
        make_subjects(conn, ids)
        add_orders(conn, _orders(ids, random.Random(11)))
    report = compute_traits(runtime=rt, clock=FrozenClock(NOW))
    assert report.clv_skipped is None and report.clv_subjects
    with rt.data_engine.begin() as conn:
        stored = conn.execute(sa.select(ClvFit).order_by(sa.desc(ClvFit.id))).mappings().first()
        again = clv.fit(conn, calibration_end=CAL_END, now=NOW)  # from the orders
    assert stored is not None and again.gamma_gamma is not None
    params = again.bgnbd.params.to_dict() | again.gamma_gamma.params.to_dict()
    for k, v in params.items():
        assert stored[k] == pytest.approx(v, rel=1e-9), k
