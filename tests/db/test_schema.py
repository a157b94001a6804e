"""Migrations build exactly the models' schema; init is idempotent; SQLite runs durable."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from cdp.audit.service import record_access
from cdp.bootstrap import initialize
from cdp.crypto.keystore_tables import keystore_metadata
from cdp.db import migrate
from cdp.db.all_models import metadata
from cdp.db.revisions import Store, _identifiers, scripts
from tests.audit.factories import make_ctx
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


@pytest.mark.parametrize("store", ["data", "keystore"])
def test_the_scripts_read_without_alembic_are_what_alembic_reads(store: Store) -> None:
    """Every process compares the databases' revisions with the migration scripts' heads,
    read from their source (importing alembic cost each command a few tenths of a second)."""
    found = scripts(store)
    alembic_reads = ScriptDirectory.from_config(migrate._config(store))
    assert found.heads == migrate.head_revisions(store)
    assert found.revisions == {script.revision for script in alembic_reads.walk_revisions()}


def test_a_script_is_read_whatever_its_layout() -> None:
    """Annotated assignments (alembic's newer template), a merge's tuple over several lines, and
    a header that a cut at the first definition would break."""
    assert _identifiers(
        'revision: str = "0030"\ndown_revision: tuple[str, ...] | None = (\n    "0029a",\n'
        '    "0029b",\n)\n\n\ndef upgrade() -> None:\n    pass\n'
    ) == {"revision": "0030", "down_revision": ("0029a", "0029b")}
    assert _identifiers(
        '"""Notes:\ndef not_code\n"""\nrevision = "0031"\ndown_revision = "0030"\n'
    ) == {"revision": "0031", "down_revision": "0030"}
    assert _identifiers(
        'import x\n\n\ndef helper() -> None:\n    pass\n\n\nrevision = "0032"\n'
        "down_revision = None\n"
    ) == {"revision": "0032", "down_revision": None}


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


def _sql_of(engine: sa.Engine, table: str) -> str:
    with engine.connect() as conn:
        if conn.dialect.name != "sqlite":
            return ""
        found = conn.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).scalar_one()
        return str(found)


def test_the_clustered_sqlite_tables_round_trip_through_their_migrations(
    cdp_env: CdpEnv,
) -> None:
    """Revisions k0002 (``data_keys``) and 0009 (``audit_subjects``) rebuild their table as
    ``WITHOUT ROWID`` on SQLite, and back on downgrade, keeping every row; on PostgreSQL they
    change nothing."""
    rt = cdp_env.runtime
    sid = make_subject(rt, {"email": "clustered@example.com"})
    record = record_access(runtime=rt, ctx=make_ctx(), action="read", resource="profiles",
                  outcome="allowed", subject_ids=[sid], fields=["email"])  # fmt: skip
    clustered = cdp_env.backend == "sqlite"
    cases = (
        (rt.key_engine, "keystore", "data_keys", "k0001"),
        (rt.data_engine, "data", "audit_subjects", "0008"),
    )

    def intact() -> bool:
        fresh = cdp_env.reopen(check_schema=False)  # (between the downgrade and the upgrade)
        readable = fresh.vault.decrypt_fields(sid, read_pii(fresh, sid))
        with fresh.data_engine.connect() as conn:
            links = conn.execute(
                sa.text("SELECT subject_id, seq FROM audit_subjects WHERE subject_id = :s"),
                {"s": sid},
            ).all()
        return readable == {"email": "clustered@example.com"} and [tuple(r) for r in links] == [
            (sid, record.seq)
        ]

    for engine, store, table, before in cases:
        assert ("WITHOUT ROWID" in _sql_of(engine, table)) is clustered, table
        migrate.downgrade(engine, store, before)  # type: ignore[arg-type]
        assert "WITHOUT ROWID" not in _sql_of(engine, table), table
        assert intact(), table
        migrate.upgrade(engine, store)  # type: ignore[arg-type]
        assert ("WITHOUT ROWID" in _sql_of(engine, table)) is clustered, table
        assert intact(), table


def test_the_audit_log_seq_is_the_sqlite_rowid_through_its_migration(cdp_env: CdpEnv) -> None:
    """Revision 0011 rebuilds ``audit_log`` on SQLite with ``seq`` as the rowid (no separate
    unique index), and back on downgrade, keeping every record: the chain verifies the same and
    appends go on; on PostgreSQL it changes nothing."""
    from cdp.audit.verify import verify_chain

    rt = cdp_env.runtime
    sid = make_subject(rt, {"email": "rowid@example.com"})
    for n in range(3):
        record_access(runtime=rt, ctx=make_ctx(), action="read", resource="profiles",
                      outcome="allowed", subject_ids=[sid], fields=[f"f{n}"])  # fmt: skip
    sqlite = cdp_env.backend == "sqlite"

    def state() -> tuple[list[tuple[object, ...]], set[str]]:
        with rt.data_engine.connect() as conn:
            rows = [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM audit_log ORDER BY seq")]
        indexes = {i["name"] for i in sa.inspect(rt.data_engine).get_indexes("audit_log")}
        return rows, {i for i in indexes if i}

    def autoindexed() -> bool:
        with rt.data_engine.connect() as conn:
            return bool(
                conn.exec_driver_sql(
                    "SELECT count(*) FROM sqlite_master WHERE tbl_name = 'audit_log' "
                    "AND name LIKE 'sqlite_autoindex_%'"
                ).scalar_one()
            )

    before = state()
    assert len(before[0]) == 3
    assert {"ix_audit_log_at", "ix_audit_log_principal_at"} <= before[1]
    if sqlite:
        assert "seq INTEGER NOT NULL" in _sql_of(rt.data_engine, "audit_log")
        assert not autoindexed()
    migrate.downgrade(rt.data_engine, "data", "0010")
    assert state() == before
    if sqlite:
        assert "seq BIGINT NOT NULL" in _sql_of(rt.data_engine, "audit_log")
        assert autoindexed()
    migrate.upgrade(rt.data_engine, "data")
    assert state() == before
    if sqlite:
        assert not autoindexed()
    rt = cdp_env.reopen()
    record_access(runtime=rt, ctx=make_ctx(), action="read", resource="profiles",
                  outcome="allowed", subject_ids=[sid], fields=["email"])  # fmt: skip
    result = verify_chain(runtime=rt)
    assert result.ok and result.records == 4


def test_orders_are_found_by_subject_through_an_index(cdp_env: CdpEnv) -> None:
    """ix_orders_subject_id was dropped (0015o) as redundant: every lookup by subject must still
    search ix_orders_subject_time_value, never scan the orders."""
    if cdp_env.backend != "sqlite":
        pytest.skip("SQLite's query plans; PostgreSQL has the same indexes")
    with cdp_env.runtime.data_engine.connect() as conn:
        for sql in (
            "SELECT id FROM orders WHERE subject_id = 'x' ORDER BY id",
            "UPDATE orders SET subject_id = NULL WHERE subject_id = 'x'",
            "SELECT count(*), sum(value_base) FROM orders WHERE subject_id = 'x'",
        ):
            plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
            assert "ix_orders_subject_time_value (subject_id=?)" in plan, (sql, plan)
