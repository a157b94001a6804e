"""Upgrading a populated database: built at the first revision, filled through that schema,
upgraded (through 0002, filled again, then to every head), and nothing is lost or changed.

This is what an operator does on every release (``cdp init`` upgrades in place), so it runs on
SQLite and on PostgreSQL. Rows are written through the schema *as it was* (tables reflected at
that revision), PII through the real vault, so the check covers ciphertexts, identity tokens and
foreign keys (a table rebuilt by a batch migration on SQLite would cascade-delete its children).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import make_url

from cdp.crypto.normalize import IdentityKind
from cdp.crypto.sealed_record import mask, unpack
from cdp.db import migrate
from cdp.db.all_models import metadata
from cdp.db.engine import get_engine
from cdp.db.models import new_subject_id
from cdp.profiles.pii_records import read_one
from cdp.runtime import Runtime
from tests.conftest import PG_URL, CdpEnv

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
PEOPLE = 40


@pytest.fixture
def fresh_data_url(cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty data database of the test's backend (the key store stays the test's own)."""
    if PG_URL is None:
        url = f"sqlite:///{cdp_env.home / 'upgrade.db'}"
        monkeypatch.setenv("CDP_DATABASE_URL", url)
        yield url
        return
    name = f"cdp_upgrade_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    monkeypatch.setenv("CDP_DATABASE_URL", url)
    try:
        yield url
    finally:
        cdp_env.reopen(check_schema=False)
        get_engine(url).dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def _tables(conn: sa.Connection) -> dict[str, sa.Table]:
    meta = sa.MetaData()
    meta.reflect(conn)
    return dict(meta.tables)


def _people(rt: Runtime) -> list[dict[str, Any]]:
    people = []
    for i in range(PEOPLE):
        people.append(
            {
                "id": new_subject_id(),
                "pii": {"email": f"p{i}@example.com", "first_name": f"Name{i}", "city": "Lyon"},
                "email": f"p{i}@example.com",
                "phone": f"+3361234{i:04d}",
            }
        )
    rt.vault.create_keys([p["id"] for p in people])
    return people


def _fill_at_0001(rt: Runtime, people: list[dict[str, Any]]) -> None:
    with rt.data_engine.begin() as conn:
        t = _tables(conn)
        assert set(t) == {"subjects", "identities", "pii_values", "tombstones", "alembic_version"}
        for i, p in enumerate(people):
            at = T0 + timedelta(minutes=i)
            conn.execute(
                t["subjects"].insert(), {"id": p["id"], "created_at": at, "updated_at": at}
            )
            conn.execute(
                t["pii_values"].insert(),
                [
                    {"subject_id": p["id"], "field": f, "ciphertext": ct, "updated_at": at}
                    for f, ct in rt.vault.encrypt_fields(p["id"], p["pii"]).items()
                ],
            )
            for kind in (IdentityKind.EMAIL, IdentityKind.PHONE):
                tok = rt.tokenizer.token(kind, p[kind.value])
                conn.execute(
                    t["identities"].insert(),
                    {
                        "subject_id": p["id"],
                        "kind": tok.kind.value,
                        "token": tok.value,
                        "key_version": tok.key_version,
                        "created_at": at,
                    },
                )
        gone = rt.tokenizer.token(IdentityKind.EMAIL, "erased@example.com")
        conn.execute(
            t["tombstones"].insert(),
            {
                "kind": "email",
                "token": gone.value,
                "key_version": gone.key_version,
                "erased_at": T0,
            },
        )


def _fill_at_0002(rt: Runtime, people: list[dict[str, Any]]) -> None:
    with rt.data_engine.begin() as conn:
        t = _tables(conn)
        for i, p in enumerate(people[:10]):
            at = T0 + timedelta(days=1, minutes=i)
            order_id = conn.execute(
                t["orders"].insert().returning(t["orders"].c.id),
                {
                    "order_ref": f"O-{i}",
                    "subject_id": p["id"],
                    "ordered_at": at,
                    "status": "completed",
                    "currency": "CNY",
                    "total_minor": 1000 + i,
                    "discount_minor": 0,
                    "value_base": 10.0 + i / 100,
                    "coupon": None,
                    "source": "shop",
                    "created_at": at,
                    "updated_at": at,
                },
            ).scalar_one()
            conn.execute(
                t["order_items"].insert(),
                {"order_id": order_id, "sku": f"S{i}", "price_minor": 1000 + i, "quantity": 1},
            )
            conn.execute(
                t["consent_events"].insert(),
                {
                    "subject_id": p["id"],
                    "purpose": "email_marketing",
                    "status": "granted",
                    "occurred_at": at,
                    "recorded_at": at,
                    "source": "shop",
                    "mechanism": "checkbox",
                    "recorded_by": "import",
                    "dedupe_key": f"d-{i}",
                },
            )


def _snapshot(conn: sa.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the tables that existed before the upgrade, in the columns they had."""
    queries = {
        "subjects": "SELECT id, created_at FROM subjects ORDER BY id",
        "identities": "SELECT subject_id, kind, token, key_version FROM identities ORDER BY token",
        "tombstones": "SELECT kind, token, key_version FROM tombstones ORDER BY token",
        "orders": "SELECT order_ref, subject_id, total_minor, value_base FROM orders ORDER BY 1",
        "order_items": "SELECT sku, price_minor, quantity FROM order_items ORDER BY 1",
        "consent_events": "SELECT subject_id, purpose, status FROM consent_events ORDER BY 1",
    }
    out = {
        name: [
            tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
            for row in conn.exec_driver_sql(sql)
        ]
        for name, sql in queries.items()
    }
    out["pii"] = _ciphertexts(conn)
    return out


def _ciphertexts(conn: sa.Connection) -> list[tuple[str, str, bytes]]:
    """Every stored field ciphertext as (subject, field, ciphertext), in either vault layout:
    one row a field (before revision 0007) or one sealed record a subject (from it on)."""
    tables = set(sa.inspect(conn).get_table_names())
    if "pii_values" in tables:
        rows = conn.exec_driver_sql("SELECT subject_id, field, ciphertext FROM pii_values")
        return sorted((sid, f, bytes(ct)) for sid, f, ct in rows)
    records = conn.exec_driver_sql("SELECT subject_id, sealed FROM pii_records")
    return sorted(
        (sid, f, ct) for sid, sealed in records for f, ct in unpack(bytes(sealed)).items()
    )


def test_a_populated_database_upgrades_from_the_first_revision(
    cdp_env: CdpEnv, fresh_data_url: str
) -> None:
    rt = cdp_env.reopen(check_schema=False)  # an empty data database
    assert rt.data_engine.url.render_as_string(hide_password=False) == fresh_data_url
    migrate.upgrade(rt.data_engine, "data", "0001")
    assert migrate.current_revisions(rt.data_engine, "data") == ("0001",)
    people = _people(rt)
    _fill_at_0001(rt, people)
    migrate.upgrade(rt.data_engine, "data", "0002")
    _fill_at_0002(rt, people)
    with rt.data_engine.connect() as conn:
        before = _snapshot(conn)
    assert len(before["subjects"]) == PEOPLE and len(before["orders"]) == 10

    migrate.upgrade(rt.data_engine, "data")  # every head, as `cdp init` does

    assert migrate.current_revisions(rt.data_engine, "data") == migrate.head_revisions("data")
    with rt.data_engine.connect() as conn:
        assert _snapshot(conn) == before
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, metadata) == []
    rt = cdp_env.reopen()
    with rt.data_engine.connect() as conn:
        for p in people:
            assert rt.vault.decrypt_fields(p["id"], read_one(conn, p["id"])) == p["pii"]
    probe = rt.tokenizer.token(IdentityKind.EMAIL, people[7]["email"])
    with rt.data_engine.connect() as conn:
        found = conn.execute(
            sa.text("SELECT subject_id FROM identities WHERE kind = 'email' AND token = :t"),
            {"t": probe.value},
        ).scalar_one()
    assert found == people[7]["id"]


def test_the_vault_layout_downgrades_and_upgrades_again_unchanged(
    cdp_env: CdpEnv, fresh_data_url: str
) -> None:
    """Revision 0007 packs each subject's field rows into one sealed record, and its downgrade
    unpacks them: both ways, every ciphertext keeps its bytes (nothing is re-encrypted)."""
    rt = cdp_env.reopen(check_schema=False)  # an empty data database
    migrate.upgrade(rt.data_engine, "data", "0001")
    people = _people(rt)
    _fill_at_0001(rt, people)
    migrate.upgrade(rt.data_engine, "data", "0006t")
    with rt.data_engine.connect() as conn:
        rows = _ciphertexts(conn)
    assert len(rows) == 3 * PEOPLE
    migrate.upgrade(rt.data_engine, "data", "0007")
    with rt.data_engine.connect() as conn:
        assert _ciphertexts(conn) == rows
        bits = dict(conn.exec_driver_sql("SELECT subject_id, fields FROM pii_records").all())
    assert bits == {p["id"]: mask(p["pii"]) for p in people}
    migrate.downgrade(rt.data_engine, "data", "0006t")
    with rt.data_engine.connect() as conn:
        assert _ciphertexts(conn) == rows
    migrate.upgrade(rt.data_engine, "data", "0007")
    rt = cdp_env.reopen(check_schema=False)  # at 0007, behind the heads
    with rt.data_engine.connect() as conn:
        assert _ciphertexts(conn) == rows
        for p in people:
            assert rt.vault.decrypt_fields(p["id"], read_one(conn, p["id"])) == p["pii"]
