"""Points earned by an order are ``floor(value * per_currency_unit)`` in exact decimal
arithmetic: 0.29 at 100 points a unit is 29 points (the float product 28.999999999999996
floored to 28 before)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp.errors import ConfigurationError
from cdp.profiles.models import Order
from cdp.settings import Settings
from cdp.traits import points
from cdp.traits.config import PointsConfig, load_traits_config
from cdp.traits.models import PointsEntry
from tests.conftest import CdpEnv
from tests.traits.factories import OrderSpec, add_order, add_orders, make_subjects

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LEDGER = PointsEntry.__table__  # type: ignore[attr-defined]
ORDERS = Order.__table__  # type: ignore[attr-defined]
_examples = itertools.count(1)


def _earned(env: CdpEnv) -> dict[int, int]:
    with env.runtime.data_engine.connect() as conn:
        rows = conn.execute(sa.select(LEDGER.c.order_id, LEDGER.c.points)).all()
    return {int(r[0]): int(r[1]) for r in rows}


def test_point_29_at_a_hundred_points_a_unit_is_29(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    assert int(0.29 * 100) == 28  # what flooring the float product gives
    sid = f"{0xB9:04x}{0:028x}"
    with rt.data_engine.begin() as conn:
        make_subjects(conn, [sid])
        oid = add_order(conn, sid, NOW - timedelta(days=1), 0.29)
        points.earn_from_orders(conn, cfg=PointsConfig(per_currency_unit=100, events={}), now=NOW)
    assert _earned(cdp_env) == {oid: 29}


RATE = st.sampled_from(["1", "100", "0.1", "0.5", "2.5", "3", "0.01", "7.35", "1000", "0.333"])
VALUE = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999.99"), places=2)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(values=st.lists(VALUE, min_size=1, max_size=10), rate=RATE)
def test_points_are_the_exact_floor(cdp_env: CdpEnv, values: list[Decimal], rate: str) -> None:
    rt = cdp_env.runtime
    sid = f"{0xBA:04x}{next(_examples):028x}"
    cfg = PointsConfig(per_currency_unit=float(rate), events={})
    with rt.data_engine.begin() as conn:
        conn.execute(sa.delete(LEDGER))
        conn.execute(sa.delete(ORDERS))
        make_subjects(conn, [sid])
        ids = add_orders(
            conn,
            [OrderSpec(sid, NOW - timedelta(hours=k + 1), float(v)) for k, v in enumerate(values)],
        )
        points.earn_from_orders(conn, cfg=cfg, now=NOW)
    exact = {
        oid: int((v * Decimal(rate)).to_integral_value(rounding=ROUND_FLOOR))
        for oid, v in zip(ids, values, strict=True)
    }
    assert _earned(cdp_env) == {oid: p for oid, p in exact.items() if p > 0}


def test_a_rate_too_fine_to_compute_exactly_is_refused(tmp_path: object) -> None:
    """A rate whose exact fraction would overflow the 64-bit arithmetic is a configuration
    error at load time, not a wrong number (or an error) in the middle of a recompute."""
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    path = tmp_path / "traits.toml"
    path.write_text("[points]\nper_currency_unit = 1.2345678901234567\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="per_currency_unit"):
        load_traits_config(Settings(traits_config=path))
