"""A completed order whose total is corrected (a partial refund, a corrected total: the same
status, a later ``updated_at``) gets its points adjusted: an ``adjust`` line for the difference,
in the order's lot. A reduction takes only what is left of the lot (points of it already expired
or redeemed are not taken a second time, as for a refund); a change of the configured rate
adjusts nothing already earned."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cdp.cli import app
from cdp.profiles.models import Order
from cdp.traits import points
from cdp.traits.config import PointsConfig
from cdp.traits.models import PointsEntry
from cdp.traits.sqlfuncs import subtract_months
from tests.conftest import CdpEnv
from tests.ingest.helpers import CUSTOMER_HEADER, customer, order, write_csv, write_jsonl
from tests.traits.factories import add_order, make_subjects, subject_ids

LEDGER = PointsEntry.__table__  # type: ignore[attr-defined]
ORDERS = Order.__table__  # type: ignore[attr-defined]
CFG = PointsConfig(per_currency_unit=1.0, events={}, expiry_months=12)
T0 = datetime(2025, 1, 1, tzinfo=UTC)
runner = CliRunner()


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _lines(env: CdpEnv, subject_id: str | None = None) -> list[tuple[str, int]]:
    query = sa.select(LEDGER.c.kind, LEDGER.c.points).order_by(LEDGER.c.id)
    if subject_id is not None:
        query = query.where(LEDGER.c.subject_id == subject_id)
    with env.runtime.data_engine.connect() as conn:
        return [(r[0], int(r[1])) for r in conn.execute(query)]


def _balance(env: CdpEnv) -> int:
    return sum(p for _, p in _lines(env))


def _set_value(conn: sa.Connection, order_id: int, value: float) -> None:
    conn.execute(sa.update(ORDERS).where(ORDERS.c.id == order_id).values(value_base=value))


def test_a_corrected_total_adjusts_the_orders_points(cdp_env: CdpEnv, tmp_path: Path) -> None:
    """The reviewer's case, through ingestion: 909.60 CNY completed, then the same order still
    completed at 100.00 with a later ``updated_at``."""
    now = datetime.now(UTC)
    placed = (now - timedelta(days=20)).isoformat()
    c = write_csv(tmp_path / "c.csv", [customer(1)], CUSTOMER_HEADER)
    _ok(["ingest", "customers", str(c)])

    def version(total: str, days_later: int) -> Path:
        row = order(1, ordered_at=placed, total=total, currency="CNY", items=[])
        row["updated_at"] = (now - timedelta(days=20 - days_later)).isoformat()
        return write_jsonl(tmp_path / f"o-{total}.jsonl", [row])

    _ok(["ingest", "orders", str(version("909.60", 0))])
    _ok(["traits", "compute", "--no-clv"])
    assert _lines(cdp_env) == [("earn", 909)]

    _ok(["ingest", "orders", str(version("100.00", 1))])
    out = _ok(["traits", "compute", "--no-clv"])
    assert "corrections 1" in out
    assert _lines(cdp_env) == [("earn", 909), ("adjust", -809)]
    assert _balance(cdp_env) == 100
    with cdp_env.runtime.data_engine.connect() as conn:
        line = conn.execute(
            sa.select(LEDGER.c.occurred_at, LEDGER.c.recorded_at, LEDGER.c.reason).where(
                LEDGER.c.kind == "adjust"
            )
        ).one()
        ordered_at = conn.execute(sa.select(ORDERS.c.ordered_at)).scalar_one()
    # In the order's lot (it expires with it), recorded when the correction was found.
    assert line.occurred_at == ordered_at and line.recorded_at > ordered_at
    assert line.reason == "order_corrected"

    _ok(["traits", "compute", "--no-clv"])
    assert len(_lines(cdp_env)) == 2  # idempotent

    # Corrected upward later: the difference is added to the lot.
    _ok(["ingest", "orders", str(version("150.20", 2))])
    _ok(["traits", "compute", "--no-clv"])
    assert _lines(cdp_env) == [("earn", 909), ("adjust", -809), ("adjust", 50)]
    assert _balance(cdp_env) == 150


def test_a_reduction_takes_only_what_is_left_of_the_lot(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    (sid,) = subject_ids(1, prefix=0x31)
    with rt.data_engine.begin() as conn:
        make_subjects(conn, [sid])
        first = add_order(conn, sid, T0, 100.0)
        second = add_order(conn, sid, T0 + timedelta(days=10), 50.0)
        points.update_ledger(conn, cfg=CFG, now=T0 + timedelta(days=20))
        points.redeem(conn, cfg=CFG, subject_id=sid, points=130, now=T0 + timedelta(days=21))
        # The oldest lot went first: none of the first order's 100 is left, 20 of the second's.
        _set_value(conn, first, 40.0)
        _set_value(conn, second, 10.0)
        ran = points.update_ledger(conn, cfg=CFG, now=T0 + timedelta(days=22))
        assert ran["corrections"] == 2
        assert points.balance(conn, subject_id=sid) == 0
    assert sorted(_lines(cdp_env)[-2:]) == [("adjust", -20), ("adjust", 0)]


def test_a_correction_after_the_lot_expired(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    (sid,) = subject_ids(1, prefix=0x32)
    later = datetime(2026, 1, 2, tzinfo=UTC)  # the lot of T0 expires at this run
    with rt.data_engine.begin() as conn:
        make_subjects(conn, [sid])
        old = add_order(conn, sid, T0, 100.0)
        add_order(conn, sid, later - timedelta(days=1), 30.0)
        points.update_ledger(conn, cfg=CFG, now=later)
        assert points.balance(conn, subject_id=sid) == 30
        # Down: the lot has nothing left, the newer 30 points stay.
        _set_value(conn, old, 60.0)
        points.update_ledger(conn, cfg=CFG, now=later + timedelta(days=1))
        assert points.balance(conn, subject_id=sid) == 30
        # Up: the lot's points would have expired with it; so do the added ones.
        _set_value(conn, old, 180.0)
        points.update_ledger(conn, cfg=CFG, now=later + timedelta(days=2))
        assert points.balance(conn, subject_id=sid) == 30
    assert _lines(cdp_env)[3:] == [("adjust", 0), ("adjust", 80), ("expire", -80)]


def test_several_corrections_then_a_refund(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    (sid,) = subject_ids(1, prefix=0x33)
    at = T0 + timedelta(days=1)
    with rt.data_engine.begin() as conn:
        make_subjects(conn, [sid])
        oid = add_order(conn, sid, T0, 909.6)
        points.update_ledger(conn, cfg=CFG, now=at)
        for value in (100.0, 100.4, 250.0, 250.0, 0.5):
            _set_value(conn, oid, value)
            points.update_ledger(conn, cfg=CFG, now=at)
            at += timedelta(days=1)
            assert points.balance(conn, subject_id=sid) == int(value)
        assert points.update_ledger(conn, cfg=CFG, now=at)["corrections"] == 0
        _set_value(conn, oid, 70.0)
        conn.execute(sa.update(ORDERS).where(ORDERS.c.id == oid).values(status="refunded"))
        points.update_ledger(conn, cfg=CFG, now=at)
        assert points.balance(conn, subject_id=sid) == 0
        rows = conn.execute(
            sa.select(LEDGER.c.kind, LEDGER.c.points, LEDGER.c.correction)
            .where(LEDGER.c.order_id == oid)
            .order_by(LEDGER.c.id)
        ).all()
    # 100.4 still earns 100 (a line of 0 records the new value); the refund takes what is left
    # of the corrected lot, and a refunded order's new value is not a correction.
    assert [tuple(r) for r in rows] == [
        ("earn", 909, 0),
        ("adjust", -809, 1),
        ("adjust", 0, 2),
        ("adjust", 150, 3),
        ("adjust", -250, 4),
        ("reversal", 0, 0),
    ]


def test_a_new_rate_adjusts_nothing_already_earned(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    (sid,) = subject_ids(1, prefix=0x34)
    with rt.data_engine.begin() as conn:
        make_subjects(conn, [sid])
        oid = add_order(conn, sid, T0, 100.0)
        points.update_ledger(conn, cfg=CFG, now=T0 + timedelta(days=1))
        doubled = PointsConfig(per_currency_unit=2.0, events={}, expiry_months=12)
        assert points.update_ledger(conn, cfg=doubled, now=T0 + timedelta(days=2)) == {
            "earn_orders": 0,
            "earn_events": 0,
            "corrections": 0,
            "reversals": 0,
            "expired": 0,
        }
        # A correction is computed at the rate configured when it is found.
        _set_value(conn, oid, 60.0)
        points.update_ledger(conn, cfg=doubled, now=T0 + timedelta(days=3))
        assert points.balance(conn, subject_id=sid) == 120


def test_a_merged_subjects_corrected_order_adjusts_the_survivors_points(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    placed = (now - timedelta(days=5)).isoformat()

    def orders(name: str, total: str, days_later: int) -> Path:
        row = order(7, "C00002", ordered_at=placed, total=total, currency="CNY", items=[])
        row["updated_at"] = (now - timedelta(days=5 - days_later)).isoformat()
        return write_jsonl(tmp_path / f"{name}.jsonl", [row])

    # A: an older customer with an email; B: known only by its customer id, with an order.
    _ok(["ingest", "customers", str(write_csv(tmp_path / "a.csv", [customer(1)], CUSTOMER_HEADER))])
    _ok(["ingest", "orders", str(orders("o1", "300.00", 0))])
    _ok(["traits", "compute", "--no-clv"])
    # B turns out to be A (same email): merged into A, with its points.
    b = customer(2, email="person1@example.com", phone="")
    _ok(["ingest", "customers", str(write_csv(tmp_path / "b.csv", [b], CUSTOMER_HEADER))])
    with cdp_env.runtime.data_engine.connect() as conn:
        (survivor,) = conn.execute(sa.select(LEDGER.c.subject_id).distinct()).scalars()
        assert conn.execute(sa.select(ORDERS.c.subject_id)).scalar_one() == survivor
    _ok(["ingest", "orders", str(orders("o2", "120.00", 1))])
    _ok(["traits", "compute", "--no-clv"])
    assert _lines(cdp_env, survivor) == [("earn", 300), ("adjust", -180)]


# --- property: random orders, corrections, refunds, redemptions and waits against the rules ---


@dataclass
class _Order:
    id: int
    at: datetime
    cents: int  # the order's value in hundredths
    completed: bool = True
    lot: int | None = None  # points of its lot (earn + adjustments + reversal), once earned
    basis: int | None = None  # the value the lot last reflected
    reversed: bool = False


@dataclass
class _Rules:
    """The documented rules, kept order by order: a lot is the order's points; consumption
    (redemptions, expiries) is one total, taken from the lots oldest first; what is left of a
    lot is its share of what consumption has not reached."""

    orders: list[_Order] = field(default_factory=list)
    used: int = 0

    def left(self) -> dict[int, int]:
        out, upto = {}, 0
        for o in sorted((o for o in self.orders if o.lot is not None), key=lambda o: o.at):
            assert o.lot is not None
            upto += o.lot
            out[o.id] = max(0, min(o.lot, upto - self.used))
        return out

    def expire(self, cutoff: datetime) -> None:
        old = sum(o.lot for o in self.orders if o.lot is not None and o.at <= cutoff)
        self.used += max(0, old - self.used)

    @property
    def balance(self) -> int:
        return sum(o.lot for o in self.orders if o.lot is not None) - self.used

    def run(self, cutoff: datetime) -> None:
        for o in self.orders:  # earn
            if o.completed and o.lot is None and o.cents // 100 > 0:
                o.lot, o.basis = o.cents // 100, o.cents
        for o in self.orders:  # corrections upward (or to as many points)
            changed = o.completed and o.lot is not None and o.basis != o.cents
            if changed and o.lot is not None and o.cents // 100 >= o.lot:
                o.lot, o.basis = o.cents // 100, o.cents
        left = self.left()  # then reductions and reversals, all from the same state
        for o in self.orders:
            if o.lot is None:
                continue
            if o.completed and o.basis != o.cents:
                o.lot -= min(o.lot - o.cents // 100, left[o.id])
                o.basis = o.cents
            elif not o.completed and not o.reversed:
                o.lot -= left[o.id]
                o.reversed = True
        self.expire(cutoff)


STEP = st.one_of(
    st.tuples(st.just("order"), st.integers(0, 30_000), st.integers(0, 60)),
    st.tuples(st.just("correct"), st.integers(0, 50), st.integers(0, 30_000)),
    st.tuples(st.just("refund"), st.integers(0, 50), st.just(0)),
    st.tuples(st.just("redeem"), st.integers(1, 100), st.just(0)),  # percent of the balance
    st.tuples(st.just("wait"), st.integers(1, 120), st.just(0)),
)
_examples = itertools.count()
STATUS = {True: "completed", False: "refunded"}


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(STEP, min_size=3, max_size=25))
def test_the_ledger_follows_the_rules_through_corrections(
    cdp_env: CdpEnv, steps: list[tuple[str, int, int]]
) -> None:
    rt = cdp_env.runtime
    cfg = PointsConfig(per_currency_unit=1.0, events={}, expiry_months=3)
    with rt.data_engine.begin() as conn:
        conn.execute(sa.delete(LEDGER))
        conn.execute(sa.delete(ORDERS))
        sid = make_subjects(conn, [f"{0x35:04x}{next(_examples):028x}"])[0]
    rules = _Rules()
    clock = datetime(2025, 1, 1, tzinfo=UTC)

    def compute() -> None:
        with rt.data_engine.begin() as conn:
            points.update_ledger(conn, cfg=cfg, now=clock)
            again = points.update_ledger(conn, cfg=cfg, now=clock)
            assert sum(again.values()) == 0  # a second run at the same time adds nothing
            bal = points.balance(conn, subject_id=sid)
            lots = dict(
                conn.execute(
                    sa.select(LEDGER.c.order_id, sa.func.sum(LEDGER.c.points))
                    .where(LEDGER.c.order_id.is_not(None))
                    .group_by(LEDGER.c.order_id)
                ).all()
            )
        rules.run(subtract_months(clock, cfg.expiry_months))
        assert {o.id: o.lot for o in rules.orders if o.lot is not None} == lots
        assert bal == rules.balance >= 0

    for i, (kind, n, m) in enumerate(steps):
        clock += timedelta(days=1)
        live = [o for o in rules.orders if o.completed]
        if kind == "order":
            # Some arrive late, dated before lots already consumed from.
            at = clock - timedelta(days=m, hours=1, minutes=i)
            with rt.data_engine.begin() as conn:
                oid = add_order(conn, sid, at, n / 100)
            rules.orders.append(_Order(oid, at, n))
        elif kind in ("correct", "refund") and live:
            o = live[n % len(live)]
            if kind == "correct":
                o.cents = m
            else:
                o.completed = False
            with rt.data_engine.begin() as conn:
                conn.execute(
                    sa.update(ORDERS)
                    .where(ORDERS.c.id == o.id)
                    .values(value_base=o.cents / 100, status=STATUS[o.completed])
                )
        elif kind == "redeem":
            rules.expire(subtract_months(clock, cfg.expiry_months))
            spend = rules.balance * n // 100
            if spend > 0:
                with rt.data_engine.begin() as conn:
                    left = points.redeem(conn, cfg=cfg, subject_id=sid, points=spend, now=clock)
                rules.used += spend
                assert left == rules.balance
            continue
        elif kind == "wait":
            clock += timedelta(days=n)
        compute()
