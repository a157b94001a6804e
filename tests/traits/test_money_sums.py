"""Money sums are exact: order values (``value_base``, at most 4 decimals) are summed as whole
ten-thousandths, so a total is the float nearest the exact decimal sum (246.04 + 10 + 43.96 is
300.0, not 299.99999999999994 as float addition gives), and a tier's spend threshold is
compared with the exact sum."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp.clock import FrozenClock
from cdp.profiles.models import Order
from cdp.traits import loyalty
from cdp.traits.compute import compute_traits
from cdp.traits.config import LoyaltyConfig, Tier
from cdp.traits.facts import subject_facts
from cdp.traits.metrics import shop_metrics
from cdp.traits.models import LoyaltyStatus, SubjectTraits
from tests.conftest import CdpEnv
from tests.traits.factories import OrderSpec, add_orders, make_subjects, subject_ids

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ORDERS = Order.__table__  # type: ignore[attr-defined]
STATUS = LoyaltyStatus.__table__  # type: ignore[attr-defined]
TRAITS = SubjectTraits.__table__  # type: ignore[attr-defined]
_examples = itertools.count(1)

#: Amounts as ingestion stores them: whole cents of major units (4 decimals after conversion).
AMOUNT = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("5000"), places=2)
CENTS_AND_MORE = st.one_of(
    AMOUNT, st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("900"), places=4)
)


def test_a_total_of_three_hundred_is_three_hundred(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    (sid,) = subject_ids(1, prefix=0xB1)
    values = (246.04, 10.0, 43.96)
    assert sum(values) != 300  # what float addition gives
    with rt.data_engine.begin() as conn:
        make_subjects(conn, [sid])
        # in time order (the order the sums read them): 246.04 first
        add_orders(
            conn, [OrderSpec(sid, NOW - timedelta(days=3 - d), v) for d, v in enumerate(values)]
        )
    cfg_tiers = LoyaltyConfig(
        tiers=(Tier(name="member"), Tier(name="silver", min_spend=300)), qualify_on="both"
    )
    from cdp.traits.config import TraitsConfig

    compute_traits(
        runtime=rt, clock=FrozenClock(NOW), config=TraitsConfig(loyalty=cfg_tiers), with_clv=False
    )
    with rt.data_engine.connect() as conn:
        total = conn.execute(sa.select(TRAITS.c.total_value)).scalar_one()
        tier = conn.execute(sa.select(STATUS.c.tier)).scalar_one()
    assert total == 300.0
    assert tier == "silver"  # 300 spent: the 300 threshold is met
    m = shop_metrics(runtime=rt, start=NOW - timedelta(days=30), end=NOW)
    assert m.revenue == 300.0 and m.new_revenue == 300.0 and m.returning_revenue == 0.0


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    baskets=st.lists(st.lists(CENTS_AND_MORE, min_size=1, max_size=8), min_size=1, max_size=6),
    same_day=st.booleans(),
)
def test_totals_are_the_exact_sums(
    cdp_env: CdpEnv, baskets: list[list[Decimal]], same_day: bool
) -> None:
    """Order facts (total and first day's value) of every buyer equal the float nearest the
    exact decimal sum, on either backend's formulation."""
    engine = cdp_env.runtime.data_engine
    n = next(_examples)
    ids = [f"{0xB2:04x}{n:014x}{i:014x}" for i in range(len(baskets))]
    specs = []
    for sid, basket in zip(ids, baskets, strict=True):
        for k, value in enumerate(basket):
            at = NOW - timedelta(days=1 if same_day else k + 1, minutes=k)
            specs.append(OrderSpec(sid, at, float(value)))
    with engine.begin() as conn:
        conn.execute(sa.delete(ORDERS))
        make_subjects(conn, ids)
        add_orders(conn, specs)
    query = subject_facts(NOW, first_value=True, dialect=engine.dialect.name)
    with engine.connect() as conn:
        got = {r.subject_id: r for r in conn.execute(query)}
    for sid, basket in zip(ids, baskets, strict=True):
        total = float(sum(basket, Decimal(0)))
        # the first day: every order when on one day, else the oldest (the last of the basket)
        first = total if same_day else float(basket[-1])
        assert got[sid].total_value == total, sid
        assert got[sid].first_value == first, sid


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(basket=st.lists(AMOUNT, min_size=1, max_size=8), above=st.sampled_from([0, 1]))
def test_the_spend_threshold_compares_with_the_exact_sum(
    cdp_env: CdpEnv, basket: list[Decimal], above: int
) -> None:
    """A threshold equal to the exact spend is met; a cent more is not."""
    engine = cdp_env.runtime.data_engine
    sid = f"{0xB3:04x}{next(_examples):028x}"
    spend = sum(basket, Decimal(0))
    threshold = spend + Decimal("0.01") * above
    cfg = LoyaltyConfig(
        tiers=(Tier(name="member"), Tier(name="silver", min_spend=float(threshold))),
        qualify_on="both",  # and no occasions needed: the spend alone decides
    )
    with engine.begin() as conn:
        conn.execute(sa.delete(STATUS))
        conn.execute(sa.delete(ORDERS))
        make_subjects(conn, [sid])
        add_orders(
            conn,
            [OrderSpec(sid, NOW - timedelta(days=k + 1), float(v)) for k, v in enumerate(basket)],
        )
    with engine.begin() as conn:
        loyalty.evaluate_tiers(conn, cfg=cfg, now=NOW)
    with engine.connect() as conn:
        tier = conn.execute(sa.select(STATUS.c.tier).where(STATUS.c.subject_id == sid)).scalar()
    assert tier == ("member" if above else "silver")
