"""A refund takes back only what is left of its order's lot: points of the lot that already
expired or were redeemed are not taken a second time (out of the person's newer points)."""

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
runner = CliRunner()
_examples = itertools.count()


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _lines(env: CdpEnv) -> list[tuple[str, int]]:
    with env.runtime.data_engine.connect() as conn:
        rows = conn.execute(sa.select(LEDGER.c.kind, LEDGER.c.points).order_by(LEDGER.c.id))
        return [(r[0], int(r[1])) for r in rows]


def test_a_refund_after_its_points_expired_takes_nothing_more(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    old = subtract_months(now, 12) - timedelta(days=2)  # its lot expires at the next compute
    _ok(["ingest", "customers", str(write_csv(tmp_path / "c.csv", [customer(1)], CUSTOMER_HEADER))])

    def orders(status_of_old: str) -> Path:
        fresh = now - timedelta(hours=1)
        rows = [
            order(1, ordered_at=old.isoformat(), total="100", currency="CNY", status=status_of_old),
            order(2, ordered_at=fresh.isoformat(), total="100", currency="CNY"),
        ]
        for row in rows:
            row["items"][0]["price"] = "100"
        return write_jsonl(tmp_path / f"orders-{status_of_old}.jsonl", rows)

    _ok(["ingest", "orders", str(orders("completed"))])
    _ok(["traits", "compute", "--no-clv"])
    assert _lines(cdp_env) == [("earn", 100), ("earn", 100), ("expire", -100)]

    _ok(["ingest", "orders", str(orders("refunded"))])
    _ok(["traits", "compute", "--no-clv"])
    # The refunded lot had nothing left: its reversal takes nothing, the fresh 100 stay.
    assert _lines(cdp_env)[3:] == [("reversal", 0)]
    assert sum(p for _, p in _lines(cdp_env)) == 100
    _ok(["traits", "compute", "--no-clv"])
    assert len(_lines(cdp_env)) == 4  # idempotent


def test_a_refund_of_a_partly_redeemed_lot_takes_what_is_left(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    (sid,) = subject_ids(1, prefix=0x21)
    cfg = PointsConfig(per_currency_unit=1.0, events={}, expiry_months=12)
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    with rt.data_engine.begin() as conn:
        make_subjects(conn, [sid])
        first = add_order(conn, sid, t0, 100.0)
        second = add_order(conn, sid, t0 + timedelta(days=10), 50.0)
        points.update_ledger(conn, cfg=cfg, now=t0 + timedelta(days=20))
        points.redeem(conn, cfg=cfg, subject_id=sid, points=130, now=t0 + timedelta(days=21))
        conn.execute(
            sa.update(ORDERS).where(ORDERS.c.id.in_([first, second])).values(status="refunded")
        )
        # The oldest lot went first: none of the first order's 100 is left, 20 of the second's.
        assert points.update_ledger(conn, cfg=cfg, now=t0 + timedelta(days=22))["reversals"] == 2
        assert points.balance(conn, subject_id=sid) == 0
    assert sorted(p for k, p in _lines(cdp_env) if k == "reversal") == [-20, 0]


# --- property: random earn / refund / redeem / expiry sequences against a model of lots ---


@dataclass
class _Lot:
    at: datetime
    points: int
    left: int
    order_id: int
    refunded: bool = False


@dataclass
class _Model:
    """The ledger's rules kept lot by lot: consumption takes the oldest lots first, expiry
    empties the lots at or before the cutoff, a refund empties its own lot."""

    lots: list[_Lot] = field(default_factory=list)

    def consume(self, amount: int) -> None:
        for lot in sorted(self.lots, key=lambda x: x.at):
            take = min(lot.left, amount)
            lot.left -= take
            amount -= take
        assert amount == 0

    def expire(self, cutoff: datetime) -> None:
        for lot in self.lots:
            if lot.at <= cutoff:
                lot.left = 0

    @property
    def balance(self) -> int:
        return sum(lot.left for lot in self.lots)


STEP = st.one_of(
    st.tuples(st.just("order"), st.integers(1, 300)),
    st.tuples(st.just("refund"), st.integers(0, 50)),
    st.tuples(st.just("redeem"), st.integers(1, 400)),
    st.tuples(st.just("wait"), st.integers(1, 200)),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(STEP, min_size=1, max_size=25))
def test_reversals_follow_the_lots_first_in_first_out(
    cdp_env: CdpEnv, steps: list[tuple[str, int]]
) -> None:
    rt = cdp_env.runtime
    cfg = PointsConfig(per_currency_unit=1.0, events={}, expiry_months=3)
    with rt.data_engine.begin() as conn:
        conn.execute(sa.delete(LEDGER))
        conn.execute(sa.delete(ORDERS))
        sid = make_subjects(conn, [f"{0x22:04x}{next(_examples):028x}"])[0]
    model = _Model()
    clock = datetime(2025, 1, 1, tzinfo=UTC)

    def compute() -> None:
        with rt.data_engine.begin() as conn:
            before = _reversals(conn)
            points.update_ledger(conn, cfg=cfg, now=clock)
            new = {o: p for o, p in _reversals(conn).items() if o not in before}
            again = points.update_ledger(conn, cfg=cfg, now=clock)
            assert sum(again.values()) == 0  # a second run at the same time adds nothing
            bal = points.balance(conn, subject_id=sid)
        for lot in model.lots:
            if lot.refunded and lot.order_id in new:
                assert -new.pop(lot.order_id) == lot.left  # exactly what is left of the lot
                lot.left = 0
        assert not new
        model.expire(subtract_months(clock, cfg.expiry_months))
        assert bal == model.balance >= 0

    for kind, n in steps:
        clock += timedelta(days=1)
        if kind == "order":
            with rt.data_engine.begin() as conn:
                oid = add_order(conn, sid, clock - timedelta(hours=1), float(n))
            model.lots.append(_Lot(clock - timedelta(hours=1), n, n, oid))
            compute()
        elif kind == "refund":
            live = [lot for lot in model.lots if not lot.refunded]
            if live:
                lot = live[n % len(live)]
                lot.refunded = True
                with rt.data_engine.begin() as conn:
                    conn.execute(
                        sa.update(ORDERS)
                        .where(ORDERS.c.id == lot.order_id)
                        .values(status="refunded")
                    )
                compute()
        elif kind == "redeem":
            model.expire(subtract_months(clock, cfg.expiry_months))
            if n <= model.balance:
                with rt.data_engine.begin() as conn:
                    left = points.redeem(conn, cfg=cfg, subject_id=sid, points=n, now=clock)
                model.consume(n)
                assert left == model.balance
        else:
            clock += timedelta(days=n)
            compute()


def _reversals(conn: sa.Connection) -> dict[int, int]:
    rows = conn.execute(
        sa.select(LEDGER.c.order_id, LEDGER.c.points).where(LEDGER.c.kind == points.REVERSAL)
    )
    return {int(r[0]): int(r[1]) for r in rows}
