"""The profile read's statements give the same rows through the raw-cursor path (SQLite) as
through ``Connection.execute``, typed the same way (aware UTC datetimes, bytes, numbers)."""

from __future__ import annotations

import sqlalchemy as sa

from cdp.crypto.normalize import IdentityKind
from cdp.profiles import reads
from cdp.profiles.views import visible_fields
from tests.conftest import CdpEnv
from tests.factories import make_subject


def test_prepared_rows_match_connection_execute(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    sid = make_subject(
        rt,
        {"email": "ann@example.com", "first_name": "Ann"},
        {IdentityKind.EMAIL: "ann@example.com", IdentityKind.CUSTOMER_ID: "C-1"},
    )
    with rt.data_engine.connect() as conn:
        statements = [reads._SUBJECT_Q[conn.dialect.name], reads._PII_Q, reads._ORDERS_Q]
        for prepared in statements:
            expected = [tuple(r) for r in conn.execute(prepared.statement, {"sid": sid})]
            assert prepared.rows(conn, {"sid": sid}) == expected
        assert prepared.rows(conn, {"sid": "0" * 32}) == [(0, 0.0, None, None)]


def test_load_restricts_to_visible_fields(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    sid = make_subject(
        rt,
        {"email": "ann@example.com", "first_name": "Ann"},
        {IdentityKind.EMAIL: "ann@example.com", IdentityKind.PHONE: "+14155550100"},
    )
    with rt.data_engine.connect() as conn:
        data = reads._load(conn, sid, visible_fields(frozenset({"contact"}), None))
        assert reads._load(conn, "f" * 32, visible_fields(frozenset(), None)) is None
        created = conn.execute(
            sa.select(reads.SUBJECTS.c.created_at).where(reads.SUBJECTS.c.id == sid)
        ).scalar_one()
    assert data is not None
    assert set(data.sealed) == {"email"}  # first_name is identity: not even loaded
    assert data.identity_kinds == ("email", "phone")
    assert data.created_at == created and data.created_at.tzinfo is not None
