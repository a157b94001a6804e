"""Property tests of the audit chain: the canonical encoding is injective, and on real storage
any single edit or deletion anywhere in a chain of any length is found at exactly that record."""

from __future__ import annotations

import json

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp.audit.chain import canonical, chain_hash
from cdp.audit.service import record_access
from cdp.audit.verify import verify_chain
from tests.audit.factories import guards_off, make_ctx
from tests.conftest import CdpEnv

text = st.text(max_size=12)
fields = st.tuples(st.integers(min_value=1, max_value=10**9), *(text for _ in range(12)))


@given(fields, fields)
def test_canonical_encoding_is_injective(a: tuple, b: tuple) -> None:  # type: ignore[type-arg]
    ca, cb = canonical(*a), canonical(*b)
    assert (ca == cb) == (a == b)
    assert json.loads(ca)[1:] == list(a)  # decodable back to its fields: no ambiguity


@given(st.binary(min_size=32, max_size=32), st.binary(max_size=64), st.binary(max_size=64))
def test_chain_hash_binds_previous_hash_and_record(prev: bytes, x: bytes, y: bytes) -> None:
    h = chain_hash(prev.hex(), x)
    assert len(h) == 64
    assert (h == chain_hash(prev.hex(), y)) == (x == y)


TEXT_COLUMNS = (
    "principal_name",
    "roles",
    "action",
    "resource",
    "subject_ids",
    "fields",
    "purpose",
    "outcome",
    "request_id",
    "client",
    "prev_hash",
    "hash",
)


def _clear(env: CdpEnv) -> None:
    with env.runtime.data_engine.begin() as conn, guards_off(conn, env.backend):
        for table in ("audit_subjects", "audit_log", "audit_head"):
            conn.exec_driver_sql(f"DELETE FROM {table}")


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    n=st.integers(min_value=1, max_value=15),
    data=st.data(),
    mutation=st.sampled_from(("edit", "delete")),
    column=st.sampled_from(TEXT_COLUMNS),
)
def test_any_single_tampering_is_found_at_its_record(
    cdp_env: CdpEnv, n: int, data: st.DataObject, mutation: str, column: str
) -> None:
    _clear(cdp_env)
    ctx = make_ctx()
    for i in range(n):
        record_access(
            runtime=cdp_env.runtime,
            ctx=ctx,
            action="read",
            resource="profile",
            outcome="allowed",
            subject_ids=[f"{i:032x}"],
            fields=["email"],
        )
    assert verify_chain(runtime=cdp_env.runtime).ok
    victim = data.draw(st.integers(min_value=1, max_value=n), label="victim")
    with cdp_env.runtime.data_engine.begin() as conn, guards_off(conn, cdp_env.backend):
        if mutation == "delete":
            conn.execute(sa.text("DELETE FROM audit_subjects WHERE seq = :s"), {"s": victim})
            conn.execute(sa.text("DELETE FROM audit_log WHERE seq = :s"), {"s": victim})
        else:  # change one character, keeping the length (columns have size limits)
            value = conn.execute(
                sa.text(f"SELECT {column} FROM audit_log WHERE seq = :s"), {"s": victim}
            ).scalar_one()
            changed = (value[:-1] + ("b" if value.endswith("a") else "a")) if value else "a"
            conn.execute(
                sa.text(f"UPDATE audit_log SET {column} = :v WHERE seq = :s"),
                {"v": changed, "s": victim},
            )
    result = verify_chain(runtime=cdp_env.runtime)
    assert not result.ok
    assert result.first_bad_seq == victim, (mutation, column, victim, n, result.problem)
