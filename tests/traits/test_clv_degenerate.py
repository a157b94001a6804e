"""A shop whose data cannot carry a CLV model (one repeat buyer among single-order buyers) still
gets its other traits: CLV is skipped with the reason, never a crash of the whole computation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cdp.clock import FrozenClock
from cdp.traits.compute import compute_traits
from tests.conftest import CdpEnv
from tests.traits.factories import OrderSpec, add_orders, make_subjects, subject_ids

NOW = datetime(2026, 6, 1, 15, 30, tzinfo=UTC)


def test_one_repeat_buyer_skips_clv_and_keeps_the_other_traits(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    ids = subject_ids(40)
    specs = [OrderSpec(sid, NOW - timedelta(days=10 + i), 20.0) for i, sid in enumerate(ids)]
    specs.append(OrderSpec(ids[0], NOW - timedelta(days=3), 35.0))  # the one repeat purchase
    with rt.data_engine.begin() as conn:
        make_subjects(conn, ids)
        add_orders(conn, specs)
    report = compute_traits(runtime=rt, clock=FrozenClock(NOW))
    assert report.subjects == 40
    assert report.clv_subjects is None
    assert report.clv_skipped and "CLV" in report.clv_skipped
