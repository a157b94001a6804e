"""The segment engine: one SQL query per rule, equal to a plain Python evaluation; malformed
rules name their bad clause; versions, snapshots, adds and removes; built-in segments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp.clock import FrozenClock
from cdp.errors import ConflictError, InvalidInputError
from cdp.privacy.restriction import restrict
from cdp.segments import membership, service
from cdp.segments.compiler import compile_rule
from cdp.segments.rules import TRAITS, parse_rule
from cdp.segments.views import SegmentIn
from cdp.traits.compute import compute_traits
from cdp.traits.config import TraitsConfig
from cdp.traits.lifecycle import LAYERS, STAGES
from cdp.traits.rfm import SEGMENTS
from tests.audit.factories import make_ctx
from tests.conftest import CdpEnv
from tests.segments.reference import evaluate, load
from tests.traits.factories import (
    CATEGORIES,
    add_consents,
    add_order,
    generate_shop,
    make_subjects,
    subject_ids,
)

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
TIERS = ("member", "silver", "gold", "platinum")
NUMBERS = {
    "orders": [0, 1, 2, 5],
    "occasions": [1, 2, 3],
    "total_value": [0.0, 50.0, 200.5, 1000.0],
    "avg_order_value": [40.0, 60.0],
    "repurchase_cycle_days": [10.0, 60.0],
    "days_since_last_order": [30, 90, 365],
    "recency_score": [1, 3, 5],
    "frequency_score": [1, 3, 5],
    "monetary_score": [2, 4],
    "expected_purchases": [0.1, 1.0],
    "p_alive": [0.2, 0.5, 0.9],
    "churn_probability": [0.3, 0.7],
    "clv": [10.0, 100.0],
    "clv_quantile": [1, 3, 5],
}
TEXTS = {"rfm_segment": SEGMENTS, "lifecycle_stage": STAGES, "value_layer": LAYERS, "tier": TIERS}


def _leaf() -> st.SearchStrategy[dict[str, Any]]:
    numeric = st.sampled_from(sorted(NUMBERS)).flatmap(
        lambda name: st.builds(
            lambda op, v: {"trait": {"name": name, "op": op, "value": v}},
            st.sampled_from(["eq", "ne", "lt", "le", "gt", "ge"]),
            st.sampled_from(NUMBERS[name]),
        )
    )
    text = st.sampled_from(sorted(TEXTS)).flatmap(
        lambda name: st.one_of(
            st.builds(
                lambda op, vs: {"trait": {"name": name, "op": op, "value": vs}},
                st.sampled_from(["in", "not_in"]),
                st.lists(st.sampled_from(TEXTS[name]), min_size=1, max_size=3, unique=True),
            ),
            st.builds(
                lambda v: {"trait": {"name": name, "op": "eq", "value": v}},
                st.sampled_from(TEXTS[name]),
            ),
            st.lists(st.sampled_from(TEXTS[name]), min_size=1, max_size=3, unique=True).map(
                lambda vs: {name: vs}
            ),
        )
    )
    return st.one_of(
        numeric,
        text,
        st.booleans().map(lambda b: {"trait": {"name": "churn_flag", "op": "eq", "value": b}}),
        st.builds(
            lambda d, lo, hi: {"orders_in_last_days": {"days": d, "min": lo, "max": hi}},
            st.sampled_from([7, 30, 90, 365]),
            st.integers(0, 2),
            st.none() | st.integers(2, 4),
        ),
        st.builds(
            lambda c, w: {"bought_category": {"category": c, "within_days": w}},
            st.sampled_from([*CATEGORIES, "none-such"]),
            st.none() | st.sampled_from([30, 180]),
        ),
        st.builds(lambda lo: {"clv_quantile": {"min": lo, "max": 5}}, st.integers(1, 5)),
        st.just({"consent": "email_marketing"}),
    )


RULES = st.recursive(
    _leaf(),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda cs: {"all": cs}),
        st.lists(inner, min_size=1, max_size=3).map(lambda cs: {"any": cs}),
        inner.map(lambda c: {"not": c}),
    ),
    max_leaves=6,
)


@pytest.fixture
def shop(cdp_env: CdpEnv) -> CdpEnv:
    rt = cdp_env.runtime
    with rt.data_engine.begin() as conn:
        generate_shop(conn, customers=1500, end=NOW, seed=11)
    compute_traits(runtime=rt, clock=FrozenClock(NOW))
    return cdp_env


def _run_counting(env: CdpEnv, rule: dict[str, Any]) -> tuple[set[str], int]:
    clause = parse_rule(rule, tiers=TIERS)
    statements: list[str] = []

    def count(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        statements.append(statement)

    engine = env.runtime.data_engine
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))  # the transaction is open before counting
        sa.event.listen(engine, "before_cursor_execute", count)
        try:
            ids = set(conn.execute(compile_rule(clause, now=NOW)).scalars())
        finally:
            sa.event.remove(engine, "before_cursor_execute", count)
    return ids, len(statements)


HAND_RULES: list[dict[str, Any]] = [
    {"all": [{"lifecycle_stage": ["dormant"]}, {"consent": "email_marketing"}]},
    {"any": [{"rfm_segment": ["champions", "loyal"]}, {"tier": ["gold", "platinum"]}]},
    {"not": {"bought_category": {"category": "shoes"}}},
    {"all": [{"orders_in_last_days": {"days": 90, "min": 2}}, {"clv_quantile": {"min": 4}}]},
    {"trait": {"name": "total_value", "op": "ge", "value": 300}},
    {"not": {"trait": {"name": "rfm_segment", "op": "in", "value": ["lost", "hibernating"]}}},
    {
        "all": [
            {"value_layer": ["high"]},
            {"trait": {"name": "churn_flag", "op": "eq", "value": True}},
        ]
    },
]


def test_hand_rules_compile_to_one_query_and_match_reference(shop: CdpEnv) -> None:
    with shop.runtime.data_engine.connect() as conn:
        data = load(conn)
    sizes = []
    for rule in HAND_RULES:
        got, queries = _run_counting(shop, rule)
        assert queries == 1
        clause = parse_rule(rule, tiers=TIERS)
        want = {sid for sid, d in data.items() if evaluate(clause, d, NOW)}
        assert got == want, rule
        sizes.append(len(got))
    assert all(0 < n < 1500 for n in sizes)  # the rules select something, not everything


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rule=RULES)
def test_random_rules_match_reference(shop: CdpEnv, rule: dict[str, Any]) -> None:
    with shop.runtime.data_engine.connect() as conn:
        data = load(conn)
    got, queries = _run_counting(shop, rule)
    assert queries == 1
    clause = parse_rule(rule, tiers=TIERS)
    assert got == {sid for sid, d in data.items() if evaluate(clause, d, NOW)}


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        (
            {"all": [{"trait": {"name": "orders", "op": "ge", "value": 1}}, {"bogus": 1}]},
            "rule.all[1]",
        ),
        (
            {"all": [{"trait": {"name": "orderz", "op": "ge", "value": 1}}]},
            "rule.all[0].trait.name",
        ),
        (
            {"any": [{"not": {"trait": {"name": "tier", "op": "gt", "value": "gold"}}}]},
            "rule.any[0].not.trait.op",
        ),
        ({"trait": {"name": "total_value", "op": "ge", "value": "many"}}, "rule.trait.value"),
        ({"trait": {"name": "tier", "op": "in", "value": "gold"}}, "rule.trait.value"),
        ({"rfm_segment": ["champs"]}, "rule.rfm_segment"),
        ({"orders_in_last_days": {"days": 0}}, "rule.orders_in_last_days.days"),
        ({"orders_in_last_days": {"days": 5, "min": 3, "max": 1}}, "rule.orders_in_last_days.max"),
        ({"consent": "spam"}, "rule.consent"),
        ({"all": []}, "rule.all"),
        ({"lifecycle_stage": ["new"], "tier": ["gold"]}, "rule"),
        ([], "rule"),
    ],
)
def test_malformed_rule_names_the_clause(rule: Any, field: str) -> None:
    with pytest.raises(InvalidInputError) as err:
        parse_rule(rule, tiers=TIERS)
    assert err.value.field == field


def test_versions_snapshots_adds_and_removes(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    a, b, c = subject_ids(3, prefix=0x51)
    clock = FrozenClock(NOW)
    with rt.data_engine.begin() as conn:
        make_subjects(conn, [a, b, c])
        add_order(conn, a, NOW - timedelta(days=3), 150.0)
        add_order(conn, b, NOW - timedelta(days=3), 50.0)
    compute_traits(runtime=rt, clock=clock, with_clv=False)
    rule = {"trait": {"name": "total_value", "op": "ge", "value": 100}}
    made = service.create_segment(
        runtime=rt, data=SegmentIn(name="big", rule=rule), actor="t", clock=clock
    )
    assert made.version == 1 and not made.builtin
    with pytest.raises(ConflictError):
        service.create_segment(runtime=rt, data=SegmentIn(name="big", rule=rule), actor="t")
    first = membership.compute_segment(runtime=rt, name="big", clock=clock)
    assert (first.member_count, first.added_count, first.removed_count) == (1, 1, 0)

    with rt.data_engine.begin() as conn:  # b and c spend more, a's order is refunded
        add_order(conn, b, NOW - timedelta(days=1), 60.0)
        add_order(conn, c, NOW - timedelta(days=1), 500.0)
        conn.execute(sa.text("UPDATE orders SET status = 'refunded' WHERE value_base = 150.0"))
    clock.advance(days=1)
    compute_traits(runtime=rt, clock=clock, with_clv=False)
    second = membership.compute_segment(runtime=rt, name="big", clock=clock)
    assert (second.member_count, second.added_count, second.removed_count) == (2, 2, 1)
    ctx = make_ctx(("marketer",), purpose="email_marketing")
    diff = membership.diff_segment(runtime=rt, ctx=ctx, name="big")
    assert diff.added == sorted([b, c]) and diff.removed == [a]
    assert diff.from_computation == first.id and diff.to_computation == second.id

    same = service.update_segment(runtime=rt, data=SegmentIn(name="big", rule=rule), actor="t")
    assert same.version == 1  # unchanged rule: no new version
    rule2 = {"trait": {"name": "total_value", "op": "ge", "value": 200}}
    changed = service.update_segment(runtime=rt, data=SegmentIn(name="big", rule=rule2), actor="t")
    assert changed.version == 2
    shown = service.get_segment(runtime=rt, name="big")
    assert [v.version for v in shown.versions or []] == [1, 2]
    assert shown.rule == parse_and_dump(rule2)
    third = membership.compute_segment(runtime=rt, name="big", clock=clock)
    assert third.version == 2 and third.member_count == 1 and third.removed_count == 1

    page1 = membership.members(runtime=rt, ctx=ctx, name="big", page_size=1)
    assert page1.subject_ids == [c] and page1.next_cursor is None
    with pytest.raises(InvalidInputError):
        membership.members(runtime=rt, ctx=ctx, name="big", page_size=100_000)


def parse_and_dump(rule: dict[str, Any]) -> dict[str, Any]:
    from cdp.segments.rules import dump_rule

    return dump_rule(parse_rule(rule, tiers=TIERS))


def test_members_paginate_by_cursor(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    ids = subject_ids(7, prefix=0x52)
    with rt.data_engine.begin() as conn:
        make_subjects(conn, ids)
    compute_traits(runtime=rt, clock=FrozenClock(NOW), with_clv=False)
    rule = {"lifecycle_stage": ["prospect"]}
    service.create_segment(runtime=rt, data=SegmentIn(name="prospects", rule=rule), actor="t")
    membership.compute_segment(runtime=rt, name="prospects", clock=FrozenClock(NOW))
    ctx = make_ctx(("marketer",), purpose="email_marketing")
    seen: list[str] = []
    cursor = None
    while True:
        page = membership.members(runtime=rt, ctx=ctx, name="prospects", page_size=3, cursor=cursor)
        seen.extend(page.subject_ids)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ids


def test_builtin_segments_and_restriction(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    dormant_ok, dormant_no, champion, newbie, restricted = subject_ids(5, prefix=0x53)
    with rt.data_engine.begin() as conn:
        make_subjects(conn, [dormant_ok, dormant_no, champion, newbie, restricted])
        for sid in (dormant_ok, dormant_no, restricted):
            add_order(conn, sid, NOW - timedelta(days=250), 40.0)
        for k in range(15):
            add_order(conn, champion, NOW - timedelta(days=2 + 10 * k), 400.0)
        add_order(conn, newbie, NOW - timedelta(days=5), 30.0)
        # A fifth ranked buyer (the restricted one is not ranked), so that scores reach 5.
        (ordinary,) = make_subjects(conn, subject_ids(1, prefix=0x54))
        add_order(conn, ordinary, NOW - timedelta(days=100), 20.0)
        add_consents(
            conn,
            [
                (dormant_ok, "email_marketing", "granted", NOW - timedelta(days=300)),
                (dormant_no, "email_marketing", "granted", NOW - timedelta(days=300)),
                (dormant_no, "email_marketing", "withdrawn", NOW - timedelta(days=10)),
                (restricted, "email_marketing", "granted", NOW - timedelta(days=300)),
            ],
        )
        restrict(conn=conn, subject_id=restricted, request_id=None)
    clock = FrozenClock(NOW)
    compute_traits(runtime=rt, clock=clock, with_clv=False)
    names = {s.name for s in service.list_segments(runtime=rt, clock=clock)}
    assert {"win_back", "vip", "new_customer_onboarding", "high_value_at_risk"} <= names
    ctx = make_ctx(("marketer",), purpose="email_marketing")

    def members(name: str) -> set[str]:
        membership.compute_segment(runtime=rt, name=name, clock=clock)
        return set(membership.members(runtime=rt, ctx=ctx, name=name, page_size=100).subject_ids)

    assert members("win_back") == {dormant_ok}
    assert members("vip") == {champion}
    assert members("new_customer_onboarding") == {newbie}
    assert restricted not in members("high_value_at_risk")


def test_config_tiers_drive_rule_validation(cdp_env: CdpEnv) -> None:
    cfg = TraitsConfig.model_validate(
        {"loyalty": {"tiers": [{"name": "basic"}, {"name": "star", "min_spend": 10}]}}
    )
    with pytest.raises(InvalidInputError):
        service.create_segment(
            runtime=cdp_env.runtime,
            config=cfg,
            actor="t",
            data=SegmentIn(name="g", rule={"tier": ["gold"]}),
        )
    made = service.create_segment(
        runtime=cdp_env.runtime,
        config=cfg,
        actor="t",
        data=SegmentIn(name="s", rule={"tier": ["star"]}),
    )
    assert made.rule == {"tier": ["star"]}
    assert set(TRAITS) >= {"tier", "clv", "rfm_segment"}
