"""Revision 0022p: earn lines written before it learn the order value they reflect, unless the
order changed after them (then the next run corrects them); a downgrade folds each order's
adjustments into one line, as the unique key before it allows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from cdp.db import migrate
from cdp.profiles.models import Order
from cdp.traits import points
from cdp.traits.config import PointsConfig
from cdp.traits.models import PointsEntry
from tests.conftest import CdpEnv
from tests.traits.factories import add_order, make_subjects, subject_ids

LEDGER = PointsEntry.__table__  # type: ignore[attr-defined]
ORDERS = Order.__table__  # type: ignore[attr-defined]
BEFORE = "0021w_prevsecret"
T0 = datetime(2025, 3, 1, tzinfo=UTC)
CFG = PointsConfig(per_currency_unit=1.0, events={}, expiry_months=12)


def _old_ledger(conn: sa.Connection) -> sa.Table:
    meta = sa.MetaData()
    return sa.Table("points_ledger", meta, autoload_with=conn)


def test_earn_lines_before_the_revision_learn_their_basis(cdp_env: CdpEnv) -> None:
    engine = cdp_env.runtime.data_engine
    (sid,) = subject_ids(1, prefix=0x41)
    with engine.begin() as conn:
        make_subjects(conn, [sid])
        kept = add_order(conn, sid, T0, 120.5)
        changed = add_order(conn, sid, T0 + timedelta(days=1), 300.0)
    migrate.downgrade(engine, "data", BEFORE)
    earned_at = T0 + timedelta(days=2)
    with engine.begin() as conn:
        old = _old_ledger(conn)
        assert "value_units" not in old.c
        for oid, pts, at in ((kept, 120, T0), (changed, 300, T0 + timedelta(days=1))):
            conn.execute(
                old.insert().values(
                    subject_id=sid,
                    kind="earn",
                    points=pts,
                    reason="order",
                    order_id=oid,
                    occurred_at=at,
                    recorded_at=earned_at,
                )
            )
        # The bug this revision's code fixes: a corrected total after the earn line.
        conn.execute(
            sa.update(ORDERS)
            .where(ORDERS.c.id == changed)
            .values(value_base=100.0, updated_at=earned_at + timedelta(days=1))
        )
    migrate.upgrade(engine, "data")
    with engine.begin() as conn:
        basis = dict(conn.execute(sa.select(LEDGER.c.order_id, LEDGER.c.value_units)).all())
        assert basis == {kept: 1_205_000, changed: None}
        ran = points.update_ledger(conn, cfg=CFG, now=T0 + timedelta(days=10))
        assert ran["corrections"] == 1
        assert points.balance(conn, subject_id=sid) == 220
        # Two more corrections of the same order, then a downgrade: one line per order.
        for value, day in ((150.0, 11), (90.0, 12)):
            conn.execute(sa.update(ORDERS).where(ORDERS.c.id == changed).values(value_base=value))
            points.update_ledger(conn, cfg=CFG, now=T0 + timedelta(days=day))
        assert points.balance(conn, subject_id=sid) == 210
    migrate.downgrade(engine, "data", BEFORE)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT kind, points FROM points_ledger WHERE order_id = :o ORDER BY id"),
            {"o": changed},
        ).all()
        assert [tuple(r) for r in rows] == [("earn", 300), ("adjust", -210)]
    migrate.upgrade(engine, "data")
    with engine.connect() as conn:
        assert points.balance(conn, subject_id=sid) == 210
