"""Shop metrics over a period, the cohort matrix, and the HTML/SVG chart, on a hand example."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from cdp.clock import FrozenClock
from cdp.errors import InvalidInputError
from cdp.traits.charts import metrics_html
from cdp.traits.compute import compute_traits
from cdp.traits.metrics import shop_metrics
from tests.conftest import CdpEnv
from tests.traits.factories import add_order, make_subjects, subject_ids


def d(y: int, m: int, day: int, h: int = 10) -> datetime:
    return datetime(y, m, day, h, tzinfo=UTC)


START, END = d(2026, 1, 1, 0), d(2026, 4, 1, 0)


def test_period_metrics_and_cohorts(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    s1, s2, s3, s4, s5 = subject_ids(5, prefix=0x41)
    with rt.data_engine.begin() as conn:
        make_subjects(conn, [s1, s2, s3, s4, s5])
        add_order(conn, s1, d(2025, 12, 15), 5.0)
        add_order(conn, s1, d(2026, 1, 10), 30.0)
        add_order(conn, s1, d(2026, 2, 10), 40.0)
        add_order(conn, s2, d(2026, 1, 5), 10.0)
        add_order(conn, s2, d(2026, 1, 5, 18), 20.0)
        add_order(conn, s2, d(2026, 4, 2), 99.0)  # after the period
        add_order(conn, s3, d(2025, 11, 1), 25.0)
        add_order(conn, s4, d(2026, 2, 1), 500.0, status="refunded")
        add_order(conn, s5, d(2026, 3, 20), 50.0)
        add_order(conn, s5, d(2026, 3, 21), 60.0, status="cancelled")
        add_order(conn, None, d(2026, 2, 2), 70.0)  # an erased subject's order
    m = shop_metrics(runtime=rt, start=START, end=END)
    assert (m.active_customers, m.new_customers, m.returning_customers) == (3, 2, 1)
    assert m.orders == 5
    assert m.revenue == pytest.approx(150.0)
    assert m.new_revenue == pytest.approx(80.0) and m.returning_revenue == pytest.approx(70.0)
    assert m.aov == pytest.approx(30.0)
    assert m.purchase_frequency == pytest.approx(5 / 3)
    assert m.repurchase_rate == pytest.approx(1 / 3)  # only s1 bought on two days
    # Previous 90 days: s1 and s3 were active; s3 did not come back.
    assert m.previous_active_customers == 2 and m.churn_rate == pytest.approx(0.5)
    cohorts = {c.cohort: (c.customers, c.active) for c in m.cohorts}
    assert cohorts == {"2026-01": (1, [1, 0, 0]), "2026-03": (1, [1])}
    with pytest.raises(InvalidInputError):
        shop_metrics(runtime=rt, start=END, end=START)


def test_html_chart_is_self_contained(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    ids = subject_ids(30, prefix=0x42)
    with rt.data_engine.begin() as conn:
        make_subjects(conn, ids)
        for k, sid in enumerate(ids):
            add_order(conn, sid, d(2026, 1 + k % 3, 1 + k % 28), 10.0 + k)
            if k % 2:
                add_order(conn, sid, d(2026, 3, 1 + k % 20), 5.0)
    compute_traits(runtime=rt, clock=FrozenClock(END), with_clv=False)
    m = shop_metrics(runtime=rt, start=START, end=END)
    assert sum(map(sum, m.rfm_grid)) == 30
    html = metrics_html(m)
    assert html.count("<svg") == 2 and html.count("</svg>") == 2
    assert "<script" not in html.lower()
    assert not re.search(r"(src|href)=", html)  # nothing loaded from anywhere
    assert "2026-01" in html and "champions" in html and "can&#x27;t lose" in html
