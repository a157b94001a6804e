"""Migrations build exactly the models' schema; init is idempotent; SQLite runs durable."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from cdp.bootstrap import initialize
from cdp.crypto.keystore import keystore_metadata
from cdp.db import migrate
from cdp.db.all_models import metadata
from tests.conftest import CdpEnv
from tests.factories import make_subject, read_pii


def test_migrations_match_the_models(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    for engine, meta, table in (
        (rt.data_engine, metadata, "alembic_version"),
        (rt.key_engine, keystore_metadata, "alembic_version_keystore"),
    ):
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn, opts={"compare_type": True, "version_table": table}
            )
            diff = compare_metadata(ctx, meta)
        assert diff == [], f"models and migrations differ: {diff}"


def test_init_is_idempotent(cdp_env: CdpEnv) -> None:
    first = initialize(cdp_env.settings)
    second = initialize(cdp_env.settings)
    assert not first.key_file_created and not second.key_file_created
    rt = cdp_env.runtime
    assert migrate.current_revisions(rt.data_engine, "data") == migrate.head_revisions("data")
    assert migrate.current_revisions(rt.key_engine, "keystore") == migrate.head_revisions(
        "keystore"
    )


def test_sqlite_is_durable(cdp_env: CdpEnv) -> None:
    if cdp_env.backend != "sqlite":
        return
    with cdp_env.runtime.data_engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_the_sqlite_key_store_is_clustered_on_the_subject_id(cdp_env: CdpEnv) -> None:
    """Revision k0002 rebuilds ``data_keys`` as ``WITHOUT ROWID`` on SQLite (and back on
    downgrade) keeping every key; on PostgreSQL it changes nothing."""
    rt = cdp_env.runtime
    sid = make_subject(rt, {"email": "clustered@example.com"})

    def table_sql() -> str:
        with rt.key_engine.connect() as conn:
            if conn.dialect.name != "sqlite":
                return ""
            found = conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = 'data_keys'"
            ).scalar_one()
            return str(found)

    def readable() -> bool:
        fresh = cdp_env.reopen()
        return fresh.vault.decrypt_fields(sid, read_pii(fresh, sid)) == {
            "email": "clustered@example.com"
        }

    clustered = cdp_env.backend == "sqlite"
    assert ("WITHOUT ROWID" in table_sql()) is clustered
    migrate.downgrade(rt.key_engine, "keystore", "k0001")
    assert "WITHOUT ROWID" not in table_sql()
    assert readable()
    rt = cdp_env.runtime
    migrate.upgrade(rt.key_engine, "keystore")
    assert ("WITHOUT ROWID" in table_sql()) is clustered
    assert readable()
