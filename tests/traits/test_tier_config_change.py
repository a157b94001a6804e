"""A change of the tiers in ``CDP_TRAITS_CONFIG`` (a tier renamed, removed, added or moved) leaves
no subject with a tier name the configuration no longer has, and every stored rank is the
tier's place in the configuration. A tier kept by name keeps its holders (the usual rules, from
its new place); a tier gone is replaced by the qualifying tier, as a first assignment."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp.profiles.models import Order
from cdp.traits import loyalty
from cdp.traits.config import LoyaltyConfig, Tier
from cdp.traits.models import LoyaltyStatus, LoyaltyTierChange
from tests.conftest import CdpEnv
from tests.traits.factories import add_order, make_subjects

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
T1 = T0 + timedelta(days=1)
STATUS = LoyaltyStatus.__table__  # type: ignore[attr-defined]
CHANGES = LoyaltyTierChange.__table__  # type: ignore[attr-defined]
ORDERS = Order.__table__  # type: ignore[attr-defined]
NAMES = ("member", "bronze", "silver", "gold", "platinum", "argent", "oro")
_examples = itertools.count(1)


def _config(names: list[str]) -> LoyaltyConfig:
    """Tiers in the given order, each 100 more spend than the one below (spend only)."""
    tiers = tuple(Tier(name=n, min_spend=100 * i) for i, n in enumerate(names))
    return LoyaltyConfig(tiers=tiers, qualify_on="both", retention_days=365)


SPEND = {"member": 0, "argent": 100, "silver": 100, "gold": 200, "platinum": 300}


def _fixed(names: list[str]) -> LoyaltyConfig:
    """Tiers with the spend of :data:`SPEND` (spend only)."""
    tiers = tuple(Tier(name=n, min_spend=SPEND[n]) for n in names)
    return LoyaltyConfig(tiers=tiers, qualify_on="both", retention_days=365)


def _qualifying(cfg: LoyaltyConfig, spend: int) -> int:
    return max(i for i, t in enumerate(cfg.tiers) if spend >= t.min_spend)


def _status(env: CdpEnv) -> dict[str, tuple[str, int, datetime]]:
    with env.runtime.data_engine.connect() as conn:
        rows = conn.execute(
            sa.select(STATUS.c.subject_id, STATUS.c.tier, STATUS.c.tier_rank, STATUS.c.since)
        )
        return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _evaluate(env: CdpEnv, cfg: LoyaltyConfig, now: datetime) -> int:
    with env.runtime.data_engine.begin() as conn:
        return loyalty.evaluate_tiers(conn, cfg=cfg, now=now)


def test_a_renamed_and_a_removed_tier(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    x, y, z = (f"{0xB7:04x}{i:028x}" for i in range(3))
    with rt.data_engine.begin() as conn:
        make_subjects(conn, [x, y, z])
        add_order(conn, x, T0 - timedelta(days=5), 150.0)  # silver
        add_order(conn, y, T0 - timedelta(days=5), 250.0)  # gold
        add_order(conn, z, T0 - timedelta(days=5), 350.0)  # platinum
    _evaluate(cdp_env, _fixed(["member", "silver", "gold", "platinum"]), T0)
    assert {s: v[0] for s, v in _status(cdp_env).items()} == {x: "silver", y: "gold", z: "platinum"}
    # silver renamed argent; platinum removed
    _evaluate(cdp_env, _fixed(["member", "argent", "gold"]), T1)
    got = _status(cdp_env)
    assert got[x] == ("argent", 1, T1)
    assert got[y] == ("gold", 2, T0)  # kept, with its since
    assert got[z] == ("gold", 2, T1)
    with rt.data_engine.connect() as conn:
        logged = conn.execute(
            sa.select(CHANGES.c.subject_id, CHANGES.c.from_tier, CHANGES.c.to_tier).where(
                CHANGES.c.changed_at == T1
            )
        ).all()
    assert sorted(tuple(r) for r in logged) == sorted(
        [(x, "silver", "argent"), (z, "platinum", "gold")]
    )
    # a removed middle tier: gold keeps its holder (with its since) at its new place, rank 1
    # (its old rank, 2, is platinum's now); z qualifies for platinum again
    t2 = T1 + timedelta(days=1)
    _evaluate(cdp_env, _fixed(["member", "gold", "platinum"]), t2)
    got = _status(cdp_env)
    assert got[y] == ("gold", 1, T0) and got[z] == ("platinum", 2, t2)
    assert got[x][:2] == ("member", 0)  # argent is gone: the qualifying tier


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    before=st.lists(st.sampled_from(NAMES), min_size=1, max_size=5, unique=True),
    after=st.lists(st.sampled_from(NAMES), min_size=1, max_size=5, unique=True),
    spends=st.lists(st.integers(0, 6).map(lambda k: 100 * k), min_size=1, max_size=6),
)
def test_after_any_tier_change_every_name_is_configured(
    cdp_env: CdpEnv, before: list[str], after: list[str], spends: list[int]
) -> None:
    rt = cdp_env.runtime
    n = next(_examples)
    ids = [f"{0xB8:04x}{n:014x}{i:014x}" for i in range(len(spends))]
    with rt.data_engine.begin() as conn:
        conn.execute(sa.delete(STATUS))
        conn.execute(sa.delete(ORDERS))
        make_subjects(conn, ids)
        for sid, spend in zip(ids, spends, strict=True):
            if spend:
                add_order(conn, sid, T0 - timedelta(days=3), float(spend))
    a, b = _config(before), _config(after)
    _evaluate(cdp_env, a, T0)
    held = {
        sid: a.tiers[_qualifying(a, spend)].name for sid, spend in zip(ids, spends, strict=True)
    }
    _evaluate(cdp_env, b, T1)
    names = [t.name for t in b.tiers]
    got = _status(cdp_env)
    for sid, spend in zip(ids, spends, strict=True):
        tier, rank, _since = got[sid]
        assert tier in names and rank == names.index(tier), (sid, tier, rank)
        qualified = _qualifying(b, spend)
        # kept: an upgrade at once, no downgrade within the retention; gone: the qualifying tier
        kept = held[sid] in names
        want = max(qualified, names.index(held[sid])) if kept else qualified
        assert tier == names[want], (sid, held[sid], tier)
