"""Rule values the databases and JSON can hold, strict types, and error paths without echoes.

A rule is refused when it is created or updated (422 naming the clause), never accepted and then
left to fail when it is computed: integers fit 64 bits, numbers are finite, a number is a JSON
number and an integer is not ``true``. An error's path keeps only the schema's names. Also: an
omitted description is kept, and a diff to a computation compares it with the one before.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cdp.api.app import create_app
from cdp.clock import FrozenClock
from cdp.errors import InvalidInputError
from cdp.segments import membership, service
from cdp.segments.models import SegmentVersion
from cdp.segments.rules import INT_MAX, INT_MIN, MAX_CLAUSES, canonical_json, parse_rule
from cdp.segments.views import SegmentIn
from cdp.traits.compute import compute_traits
from tests.audit.factories import make_ctx, make_principal
from tests.conftest import CdpEnv
from tests.traits.factories import add_order, make_subjects, subject_ids

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
TIERS = ("member", "silver", "gold", "platinum")
HUGE = 10**30
NAN = float("nan")
INF = float("inf")
PII_KEY = "jane.roe@example.com 555-123-4567"


def _trait(value: Any, op: str = "gt", name: str = "total_value") -> dict[str, Any]:
    return {"trait": {"name": name, "op": op, "value": value}}


def _refused(rule: dict[str, Any], field: str, says: str) -> None:
    with pytest.raises(InvalidInputError) as err:
        parse_rule(rule, tiers=TIERS)
    assert err.value.field is not None and err.value.field.startswith(field), err.value.field
    assert says in str(err.value)


@pytest.mark.parametrize(
    ("rule", "field", "says"),
    [
        # integers past 64 bits (SQLite and PostgreSQL cannot take them as parameters)
        (_trait(HUGE), "rule.trait.value", "2^63"),
        (_trait(-HUGE, "lt"), "rule.trait.value", "2^63"),
        (_trait(INT_MAX + 1), "rule.trait.value", "2^63"),
        (_trait([1, HUGE], "in"), "rule.trait.value", "2^63"),
        (
            {"all": [{"orders_in_last_days": {"days": 30, "min": HUGE}}]},
            "rule.all[0].orders_in_last_days.min",
            "less than or equal",
        ),
        (
            {"orders_in_last_days": {"days": 30, "max": HUGE}},
            "rule.orders_in_last_days.max",
            "less than or equal",
        ),
        ({"orders_in_last_days": {"days": HUGE}}, "rule.orders_in_last_days.days", "36500"),
        (
            {"bought_category": {"category": "x", "within_days": HUGE}},
            "rule.bought_category.within_days",
            "36500",
        ),
        # NaN and Infinity
        (_trait(NAN), "rule.trait.value", "finite"),
        (_trait(INF, "lt"), "rule.trait.value", "finite"),
        (_trait(-INF, "ne"), "rule.trait.value", "finite"),
        ({"not": _trait([1.5, NAN], "not_in")}, "rule.not.trait.value", "finite"),
        # a nested or non-scalar value gets one reason
        (_trait({"a": 1}, "eq"), "rule.trait.value", "a value is"),
        (_trait([[1]], "in"), "rule.trait.value", "a value is"),
    ],
)
def test_out_of_range_and_non_finite_numbers_are_refused(
    rule: dict[str, Any], field: str, says: str
) -> None:
    _refused(rule, field, says)


def test_the_edges_of_the_range_are_accepted_and_compute(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    a, b = subject_ids(2, prefix=0x71)
    with rt.data_engine.begin() as conn:
        make_subjects(conn, [a, b])
        add_order(conn, a, NOW - timedelta(days=3), 150.0)
    clock = FrozenClock(NOW)
    compute_traits(runtime=rt, clock=clock, with_clv=False)
    rule = {
        "all": [
            _trait(INT_MAX, "le", "orders"),
            _trait(INT_MIN, "gt", "total_value"),
            _trait([INT_MIN, 1, INT_MAX], "in", "orders"),
            _trait(1.7e308, "lt", "avg_order_value"),
            {"orders_in_last_days": {"days": 36500, "min": 0, "max": INT_MAX}},
        ]
    }
    service.create_segment(runtime=rt, data=SegmentIn(name="edges", rule=rule), actor="t")
    done = membership.compute_segment(runtime=rt, name="edges", clock=clock)
    assert done.member_count == 1  # a; b has no average order value


def test_canonical_json_is_strict_json() -> None:
    clause = parse_rule(_trait(1e308), tiers=TIERS)
    assert json.loads(canonical_json(clause)) == _trait(1e308)


@pytest.fixture
def client(cdp_env: CdpEnv) -> TestClient:
    return TestClient(create_app(), raise_server_exceptions=False)


@pytest.fixture
def headers(cdp_env: CdpEnv) -> dict[str, str]:
    token = make_principal(cdp_env.runtime, ["marketer"]).token
    return {
        "Authorization": f"Bearer {token}",
        "X-Purpose": "email_marketing",
        "Content-Type": "application/json",
    }


def _api_refuses(client: TestClient, headers: dict[str, str], raw: bytes, loc: str) -> None:
    """Creating and updating with rule ``raw`` is a 422 naming the clause, echoing nothing."""
    for method, path, name in (
        ("POST", "/v1/segments", b"s"),
        ("PUT", "/v1/segments/win_back", b"win_back"),
    ):
        body = b'{"name":"' + name + b'","rule":' + raw + b"}"
        r = client.request(method, path, content=body, headers=headers)
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["code"] == "validation_failed"
        assert error["details"][0]["loc"].startswith("rule.")
        assert error["details"][0]["loc"].endswith(loc)
        assert PII_KEY not in r.text and "0" * 30 not in r.text
    assert client.get("/v1/segments/s", headers=headers).status_code == 404


@pytest.mark.parametrize(
    ("raw", "loc"),
    [
        (b'{"trait":{"name":"total_value","op":"gt","value":1' + b"0" * 30 + b"}}", "value"),
        (b'{"orders_in_last_days":{"days":30,"min":1' + b"0" * 30 + b"}}", "min"),
        (b'{"orders_in_last_days":{"days":30,"max":1' + b"0" * 30 + b"}}", "max"),
        (b'{"trait":{"name":"total_value","op":"gt","value":NaN}}', "value"),
        (b'{"trait":{"name":"total_value","op":"lt","value":Infinity}}', "value"),
        (b'{"trait":{"name":"total_value","op":"in","value":[1,-Infinity]}}', "value"),
    ],
)
def test_the_api_refuses_huge_and_non_finite_numbers(
    client: TestClient, headers: dict[str, str], raw: bytes, loc: str
) -> None:
    _api_refuses(client, headers, raw, loc)


def _store_rule_as_before(env: CdpEnv, name: str, text: str) -> None:
    """A segment whose stored rule was accepted before today's checks existed."""
    rt = env.runtime
    service.create_segment(
        runtime=rt, data=SegmentIn(name=name, rule={"consent": "analytics"}), actor="t"
    )
    ver_t = SegmentVersion.__table__  # type: ignore[attr-defined]
    with rt.data_engine.begin() as conn:
        seg_id = conn.execute(sa.text("SELECT id FROM segments WHERE name = :n"), {"n": name})
        conn.execute(
            sa.update(ver_t).where(ver_t.c.segment_id == seg_id.scalar_one()).values(rule=text)
        )


@pytest.mark.parametrize(
    "text",
    [
        '{"trait":{"name":"total_value","op":"gt","value":' + str(HUGE) + "}}",
        '{"orders_in_last_days":{"days":30,"max":null,"min":' + str(HUGE) + "}}",
        '{"not":{"trait":{"name":"total_value","op":"gt","value":NaN}}}',
    ],
)
def test_a_rule_stored_before_the_checks_is_reported_when_computed(
    cdp_env: CdpEnv, text: str
) -> None:
    _store_rule_as_before(cdp_env, "old", text)
    with pytest.raises(InvalidInputError) as err:
        membership.compute_segment(runtime=cdp_env.runtime, name="old", clock=FrozenClock(NOW))
    assert "stored rule" in str(err.value) and "update the segment" in str(err.value)
    assert str(HUGE) not in str(err.value)


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        (
            {"trait": {"name": "orders", "op": "eq", "value": 1, PII_KEY: 1}},
            "rule.trait.(unknown field)",
        ),
        (
            {"any": [{"orders_in_last_days": {"days": 3, PII_KEY: 1}}]},
            "rule.any[0].orders_in_last_days.(unknown field)",
        ),
        ({"clv_quantile": {"min": 1, "x" * 5000: 1}}, "rule.clv_quantile.(unknown field)"),
    ],
)
def test_an_unknown_key_is_not_echoed(rule: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInputError) as err:
        parse_rule(rule, tiers=TIERS)
    assert err.value.field == field
    assert PII_KEY not in str(err.value) and "xxxxx" not in str(err.value)


def test_the_api_does_not_echo_an_unknown_key(client: TestClient, headers: dict[str, str]) -> None:
    raw = b'{"trait":{"name":"orders","op":"eq","value":1,"' + PII_KEY.encode() + b'":1}}'
    _api_refuses(client, headers, raw, "(unknown field)")


@pytest.mark.parametrize(
    ("rule", "field", "says"),
    [
        ({"orders_in_last_days": {"days": True}}, "rule.orders_in_last_days.days", "integer"),
        ({"orders_in_last_days": {"days": "30"}}, "rule.orders_in_last_days.days", "integer"),
        ({"orders_in_last_days": {"days": 30.0}}, "rule.orders_in_last_days.days", "integer"),
        ({"orders_in_last_days": {"days": 3, "min": False}}, "rule.orders_in_last_days.min", "int"),
        ({"clv_quantile": {"min": True}}, "rule.clv_quantile.min", "integer"),
        ({"clv_quantile": {"min": "4"}}, "rule.clv_quantile.min", "integer"),
        ({"bought_category": {"category": "x", "within_days": "9"}}, "rule.bought_category", "int"),
        ({"bought_category": {"category": 5}}, "rule.bought_category.category", "string"),
        (_trait("30", "ge", "orders"), "rule.trait.value", "numbers"),
    ],
)
def test_numbers_are_json_numbers_and_integers_not_booleans(
    rule: dict[str, Any], field: str, says: str
) -> None:
    _refused(rule, field, says)


@pytest.mark.parametrize(
    "raw", [b'{"orders_in_last_days":{"days":true}}', b'{"orders_in_last_days":{"days":"30"}}']
)
def test_the_api_refuses_lax_types(client: TestClient, headers: dict[str, str], raw: bytes) -> None:
    _api_refuses(client, headers, raw, "days")


def test_an_omitted_description_is_kept(
    cdp_env: CdpEnv, client: TestClient, headers: dict[str, str]
) -> None:
    rt = cdp_env.runtime
    rule = {"consent": "analytics"}
    service.create_segment(
        runtime=rt, data=SegmentIn(name="d", description="first", rule=rule), actor="t"
    )
    other = {"consent": "email_marketing"}
    r = client.put("/v1/segments/d", json={"name": "d", "rule": other}, headers=headers)
    assert r.status_code == 200 and r.json()["version"] == 2
    assert r.json()["description"] == "first"  # a new rule, the same description
    r = client.put("/v1/segments/d", json={"name": "d", "rule": other}, headers=headers)
    assert r.json()["description"] == "first"  # nothing changed
    made = service.update_segment(runtime=rt, data=SegmentIn(name="d", rule=rule), actor="t")
    assert (made.version, made.description) == (3, "first")
    body = {"name": "d", "rule": rule, "description": "second"}
    assert client.put("/v1/segments/d", json=body, headers=headers).json()["description"] == (
        "second"
    )
    body["description"] = ""
    cleared = client.put("/v1/segments/d", json=body, headers=headers).json()
    assert (cleared["version"], cleared["description"]) == (3, "")
    r = client.post("/v1/segments", json={"name": "e", "rule": rule}, headers=headers)
    assert r.status_code == 201 and r.json()["description"] == ""


def test_diff_to_a_computation_compares_with_the_one_before_it(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    a, b, c = subject_ids(3, prefix=0x72)
    clock = FrozenClock(NOW)
    with rt.data_engine.begin() as conn:
        make_subjects(conn, [a, b, c])
        add_order(conn, a, NOW - timedelta(days=3), 150.0)
    compute_traits(runtime=rt, clock=clock, with_clv=False)
    rule = {"trait": {"name": "total_value", "op": "ge", "value": 100}}
    service.create_segment(runtime=rt, data=SegmentIn(name="big", rule=rule), actor="t")
    first = membership.compute_segment(runtime=rt, name="big", clock=clock)
    with rt.data_engine.begin() as conn:
        add_order(conn, b, NOW - timedelta(days=1), 500.0)
    clock.advance(days=1)
    compute_traits(runtime=rt, clock=clock, with_clv=False)
    second = membership.compute_segment(runtime=rt, name="big", clock=clock)
    with rt.data_engine.begin() as conn:
        add_order(conn, c, NOW, 700.0)
    clock.advance(days=1)
    compute_traits(runtime=rt, clock=clock, with_clv=False)
    membership.compute_segment(runtime=rt, name="big", clock=clock)

    ctx = make_ctx(("marketer",), purpose="email_marketing")
    d = membership.diff_segment(runtime=rt, ctx=ctx, name="big", to_id=second.id)
    assert (d.from_computation, d.to_computation) == (first.id, second.id)
    assert (d.added, d.removed, d.added_count) == ([b], [], 1)
    d = membership.diff_segment(runtime=rt, ctx=ctx, name="big", to_id=first.id)
    assert d.from_computation is None and d.added == [a]  # the first: everyone joined
    explicit = membership.diff_segment(runtime=rt, ctx=ctx, name="big", from_id=first.id)
    assert explicit.added == sorted([b, c])


def test_a_value_keeps_its_own_type_against_an_integer_column(cdp_env: CdpEnv) -> None:
    """PostgreSQL casts a parameter to the type it is bound with: bound as the INTEGER column,
    2.5 read as 3 and 3000000000 overflowed."""
    rt = cdp_env.runtime
    (a,) = subject_ids(1, prefix=0x74)
    with rt.data_engine.begin() as conn:
        make_subjects(conn, [a])
        for days in (3, 30, 60):
            add_order(conn, a, NOW - timedelta(days=days), 10.0)
    compute_traits(runtime=rt, clock=FrozenClock(NOW), with_clv=False)
    rules = {
        "a": _trait(2.5, "le", "orders"),  # 3 orders: not <= 2.5
        "b": _trait([2.5, 3.5], "in", "orders"),
        "c": _trait(3_000_000_000, "lt", "orders"),  # past INTEGER
        "d": {"orders_in_last_days": {"days": 90, "min": 2, "max": 3_000_000_000}},
        "e": _trait(3.0, "eq", "orders"),
    }
    got = {}
    for name, rule in rules.items():
        service.create_segment(runtime=rt, data=SegmentIn(name=name, rule=rule), actor="t")
        got[name] = membership.compute_segment(runtime=rt, name=name, clock=FrozenClock(NOW))
    assert {n: c.member_count for n, c in got.items()} == {"a": 0, "b": 0, "c": 1, "d": 1, "e": 1}


@pytest.mark.parametrize(
    ("raw", "loc"),
    [
        (b'{"bought_category":{"category":"a\\u0000b"}}', "category"),
        (b'{"trait":{"name":"lifecycle_stage","op":"eq","value":"a\\u0000b"}}', "value"),
        (b'{"trait":{"name":"lifecycle_stage","op":"eq","value":"a\\ud800b"}}', "value"),
    ],
)
def test_the_api_refuses_text_no_database_can_hold(
    client: TestClient, headers: dict[str, str], raw: bytes, loc: str
) -> None:
    """PostgreSQL's text cannot hold NUL (the rule was stored, then computing it failed)."""
    _api_refuses(client, headers, raw, loc)


def test_a_description_holding_nul_is_refused(client: TestClient, headers: dict[str, str]) -> None:
    body = b'{"name":"s","description":"spring\\u0000sale","rule":{"consent":"analytics"}}'
    r = client.post("/v1/segments", content=body, headers=headers)
    assert r.status_code == 422, r.text
    assert "NUL" in r.text and "spring" not in r.text


def _groups(*sizes: int) -> dict[str, Any]:
    leaf = {"tier": ["member"]}
    return {"any": [{"all": [leaf] * n} for n in sizes]}


def test_a_rule_holds_at_most_a_thousand_clauses() -> None:
    """The per-level (200) and depth (12) bounds alone admit 200 x 200 leaves; the whole rule,
    its ``any``/``all`` included, is bounded too."""
    assert MAX_CLAUSES == 1000
    parse_rule(_groups(199, 199, 199, 199, 198), tiers=TIERS)  # 1 + 5 + 994 clauses
    _refused(_groups(199, 199, 199, 199, 199), "rule", "at most 1000 clauses")
    _refused({"not": _groups(199, 199, 199, 199, 198)}, "rule", "at most 1000 clauses")


def test_the_api_refuses_a_rule_of_forty_thousand_clauses(
    client: TestClient, headers: dict[str, str]
) -> None:
    body = json.dumps({"name": "s", "rule": _groups(*[200] * 200)})
    assert len(body) < 1_048_576  # under the body limit: the rule bound is what refuses it
    r = client.post("/v1/segments", content=body, headers=headers)
    assert r.status_code == 422, r.text
    assert "at most 1000 clauses" in r.text
    assert client.get("/v1/segments/s", headers=headers).status_code == 404
