"""PostgreSQL: the earn inserts read the ledger they fill (the anti-join that finds orders and
events without an earn line). With statistics that say the ledger is empty, as after the usual
``ANALYZE`` once a shop's orders are loaded and before the first traits run, PostgreSQL planned
a nested loop re-scanning the ledger for every order, over the lines the statement itself was
adding: quadratic (9.3 s for 14,073 orders of the demo shop). The step plans them without
nested loops; each statement's plan is read here as the step runs it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from cdp.traits import points
from cdp.traits.config import PointsConfig
from tests.conftest import CdpEnv
from tests.traits.factories import OrderSpec, add_event, add_orders, make_subjects, subject_ids

T0 = datetime(2026, 3, 1, tzinfo=UTC)
CFG = PointsConfig(per_currency_unit=1.0, events={"Checked In": 5}, expiry_months=12)


def test_the_earn_inserts_do_not_rescan_the_ledger_per_row(cdp_env: CdpEnv) -> None:
    if cdp_env.backend == "sqlite":
        pytest.skip("PostgreSQL's plans (SQLite's are checked in tests/db/test_schema.py)")
    engine = cdp_env.runtime.data_engine
    ids = subject_ids(200, prefix=0x51)
    with engine.begin() as conn:
        make_subjects(conn, ids)
        hours = enumerate(ids * 5)
        add_orders(conn, [OrderSpec(s, T0 + timedelta(hours=h), 10.0 + h % 7) for h, s in hours])
        for i, sid in enumerate(ids):
            add_event(conn, sid, "Checked In", T0 + timedelta(minutes=i))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE")  # orders counted; the ledger, empty

    plans: list[str] = []

    def explain(conn: sa.Connection, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.startswith("INSERT INTO points_ledger") and "NOT (EXISTS" in statement:
            cursor.execute("EXPLAIN " + statement, parameters)
            plans.append("\n".join(r[0] for r in cursor.fetchall()))

    sa.event.listen(engine, "before_cursor_execute", explain)
    try:
        with engine.begin() as conn:
            ran = points.update_ledger(conn, cfg=CFG, now=T0 + timedelta(days=60))
    finally:
        sa.event.remove(engine, "before_cursor_execute", explain)
    assert (ran["earn_orders"], ran["earn_events"]) == (1000, 200)
    assert len(plans) == 2
    for plan in plans:
        assert "Anti Join" in plan and "Nested Loop" not in plan, plan
