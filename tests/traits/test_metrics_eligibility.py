"""One metrics response describes one population: the subjects the traits may profile. A
subject under an open restriction, or whose ``analytics`` purpose is withdrawn (an upheld
objection to profiling), counts in no metric (customers, orders, revenue, churn, cohorts), as
it counts in no trait and so in no cell of the RFM grid of the same response."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cdp.api.app import create_app
from cdp.clock import FrozenClock
from cdp.privacy.models import Restriction
from cdp.privacy.restriction import restrict
from cdp.traits.compute import compute_traits
from cdp.traits.metrics import ShopMetrics, shop_metrics
from tests.audit.factories import make_principal
from tests.conftest import CdpEnv
from tests.traits.factories import add_consents, add_order, make_subjects, subject_ids

START, END = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)


def _shape(m: ShopMetrics) -> tuple[object, ...]:
    return (
        m.active_customers,
        m.new_customers,
        m.orders,
        m.revenue,
        m.repurchase_rate,
        m.previous_active_customers,
        m.churn_rate,
        [(c.cohort, c.customers, c.active) for c in m.cohorts],
        sum(map(sum, m.rfm_grid)),
    )


def test_restricted_subjects_and_objectors_are_in_no_metric(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    restricted, objector, kept, other = subject_ids(4, prefix=0x71)
    with rt.data_engine.begin() as conn:
        make_subjects(conn, [restricted, objector, kept, other])
        for k, sid in enumerate((restricted, objector, kept, other)):
            add_order(conn, sid, START - timedelta(days=20), 10.0)  # the previous period
            add_order(conn, sid, START + timedelta(days=10 + k), 100.0)
            add_order(conn, sid, START + timedelta(days=40 + k), 50.0 * (k + 1))
        add_order(conn, objector, START + timedelta(days=45), 70.0)
        add_order(conn, restricted, START + timedelta(days=60), 5.0)
        restrict(conn=conn, subject_id=restricted, request_id=None)
        add_consents(conn, [(objector, "analytics", "withdrawn", START)])
    compute_traits(runtime=rt, clock=FrozenClock(END), with_clv=False)

    m = shop_metrics(runtime=rt, start=START, end=END)
    # kept: 100 + 150; other: 100 + 200. Both first bought before the period.
    assert _shape(m) == (2, 0, 4, 550.0, 1.0, 2, 0.0, [], 2)
    assert m.aov == pytest.approx(137.5) and m.purchase_frequency == 2.0

    analyst = make_principal(rt, ["analyst"]).token
    client = TestClient(create_app())
    r = client.get(
        "/v1/metrics?from=2026-01-01&to=2026-04-01",
        headers={"Authorization": f"Bearer {analyst}", "X-Purpose": "analytics"},
    )
    assert r.status_code == 200
    body = r.json()
    assert (body["active_customers"], body["orders"], body["revenue"]) == (2, 4, 550.0)
    assert sum(map(sum, body["rfm_grid"])) == 2

    # The restriction lifted, the person counts again (the grid at the next computation).
    with rt.data_engine.begin() as conn:
        r = Restriction.__table__  # type: ignore[attr-defined]
        conn.execute(sa.update(r).values(lifted_at=END))
    m = shop_metrics(runtime=rt, start=START, end=END)
    assert (m.active_customers, m.orders, m.revenue) == (3, 7, 705.0)
    assert m.previous_active_customers == 3
