"""Revision 0010: on SQLite the export bookkeeping tables are clustered on their keys
(``WITHOUT ROWID``) and ``export_staging`` has no action index; a downgrade and an upgrade keep
every row of the sync state and the recipients ledger, and exports keep working after both."""

from __future__ import annotations

import sqlalchemy as sa

from cdp.db import migrate
from tests.conftest import CdpEnv
from tests.exports.conftest import World

TABLES = ("export_staging", "export_recipients", "export_sync_members")


def _sql_of(engine: sa.Engine, table: str) -> str:
    with engine.connect() as conn:
        return str(
            conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
            ).scalar_one()
        )


# the columns of revision 0010 (a later one added export_sync_members.confirmed)
COLUMNS = {
    "export_recipients": "export_id, subject_id, destination_id, op, fields, at",
    "export_sync_members": "destination_id, segment, subject_id, export_id",
}


def _rows(world: World) -> dict[str, list[tuple[object, ...]]]:
    with world.rt.data_engine.connect() as conn:
        return {
            t: sorted(tuple(r) for r in conn.exec_driver_sql(f"SELECT {cols} FROM {t}"))
            for t, cols in COLUMNS.items()
        }


def test_export_tables_round_trip_through_revision_0010(world: World, cdp_env: CdpEnv) -> None:
    engine = world.rt.data_engine
    sqlite = cdp_env.backend == "sqlite"
    ids = [world.person({"email": f"c{i}@example.com"}) for i in range(3)]
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    assert world.export_email().counts.sent == 3
    before = _rows(world)
    assert len(before["export_recipients"]) == 3 and len(before["export_sync_members"]) == 3
    if sqlite:
        assert all("WITHOUT ROWID" in _sql_of(engine, t) for t in TABLES)
    assert "ix_export_staging_action" not in {
        i["name"] for i in sa.inspect(engine).get_indexes("export_staging")
    }

    migrate.downgrade(engine, "data", "0009")
    if sqlite:
        assert not any("WITHOUT ROWID" in _sql_of(engine, t) for t in TABLES)
    assert "ix_export_staging_action" in {
        i["name"] for i in sa.inspect(engine).get_indexes("export_staging")
    }
    assert _rows(world) == before
    migrate.upgrade(engine, "data")
    if sqlite:
        assert all("WITHOUT ROWID" in _sql_of(engine, t) for t in TABLES)
    assert _rows(world) == before

    # the sync state survived: a new person is the only add, a withdrawal is a remove
    world.person({"email": "c9@example.com"})
    world.consent(ids[0], ["email_marketing"], "withdrawn")
    c = world.export_email().counts
    assert (c.sent, c.unchanged, c.removed) == (1, 2, 1)
