"""The steps of an erasure that touch the data database (:mod:`cdp.privacy.erasure` orders
them): who received the subjects, which registry entries are live, how each entry's treatment
is applied, SQLite's ``secure_delete`` around the deletes, and clearing the WALs afterwards."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cdp.crypto.scrub import clear_wal
from cdp.db.all_models import metadata
from cdp.db.id_lists import rewrite_id_lists
from cdp.logging import get_logger
from cdp.privacy.registry import SubjectTable, Treatment, present_entries
from cdp.runtime import Runtime

if TYPE_CHECKING:
    from cdp.privacy.erasure import ErasureOutcome

log = get_logger("cdp.privacy")


def add_count(counter: dict[str, int], table: str, n: int) -> None:
    if n:
        counter[table] = counter.get(table, 0) + n


def recipients_of(conn: Connection, subject_ids: Sequence[str]) -> list[dict[str, str]]:
    """Destinations that received any of ``subject_ids`` (from every registered recipients
    ledger; empty until the exports tables exist)."""
    found: dict[str, dict[str, str]] = {}
    for entry in present_entries(metadata, sa.inspect(conn).get_table_names()):
        if entry.destination_column is None:
            continue
        table = metadata.tables[entry.table]
        dest = table.c[entry.destination_column]
        for (dest_id,) in conn.execute(
            sa.select(dest).where(table.c[entry.column].in_(subject_ids)).distinct()
        ):
            found[str(dest_id)] = {"destination_id": str(dest_id)}
    destinations = metadata.tables.get("export_destinations")
    if destinations is not None and found and sa.inspect(conn).has_table(destinations.name):
        for row in conn.execute(
            sa.select(destinations.c.id, destinations.c.name, destinations.c.kind).where(
                destinations.c.id.in_(list(found))
            )
        ):
            found[row.id].update(name=row.name, kind=row.kind)
    return [found[k] for k in sorted(found)]


def live_entries(runtime: Runtime) -> list[SubjectTable]:
    """Registry entries whose table is both modelled and migrated in this database."""
    with runtime.data_engine.connect() as conn:
        return present_entries(metadata, sa.inspect(conn).get_table_names())


def _scrub(conn: Connection, table: sa.Table, column: str, subject_ids: Sequence[str]) -> int:
    wanted = set(subject_ids)
    return rewrite_id_lists(
        conn, table, column, subject_ids, lambda ids: [s for s in ids if s not in wanted]
    )


def apply_entry(
    conn: Connection, entry: SubjectTable, subject_ids: Sequence[str], outcome: ErasureOutcome
) -> None:
    table = metadata.tables[entry.table]
    col = table.c[entry.column]
    if entry.treatment is Treatment.RETAIN:
        outcome.retained.append(entry.table)
    elif entry.treatment is Treatment.DELETE:
        n = conn.execute(sa.delete(table).where(col.in_(subject_ids))).rowcount
        add_count(outcome.deleted, entry.table, int(n or 0))
    elif entry.treatment is Treatment.UNLINK:
        values = {entry.column: None, **{c: None for c in entry.also_null}}
        n = conn.execute(sa.update(table).where(col.in_(subject_ids)).values(values)).rowcount
        add_count(outcome.unlinked, entry.table, int(n or 0))
    else:
        add_count(outcome.scrubbed, entry.table, _scrub(conn, table, entry.column, subject_ids))


@contextmanager
def secure_delete(conn: Connection) -> Iterator[None]:
    """On SQLite, overwrite deleted content with zeros (so that freed pages of the database file
    do not keep the erased ids and tokens); PostgreSQL's dead tuples go with VACUUM."""
    if conn.dialect.name != "sqlite":
        yield
        return
    before = conn.exec_driver_sql("PRAGMA secure_delete").scalar()
    conn.exec_driver_sql("PRAGMA secure_delete = ON")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA secure_delete = {int(before or 0)}")


def clear_wals(runtime: Runtime) -> dict[str, bool]:
    """Checkpoint and truncate the WAL of the key store, then of the data database, where they
    are SQLite; return which were cleared. One not cleared is logged (never with an id): its WAL
    keeps old page copies until the next successful clear."""
    cleared: dict[str, bool] = {}
    for name, engine in (("key_store", runtime.key_engine), ("data_database", runtime.data_engine)):
        done = clear_wal(engine)
        if done is None:
            continue
        cleared[name] = done
        if not done:
            log.warning(
                "sqlite wal not cleared after erasure",
                database=name,
                reason="a reader held an older snapshot",
                retry="the next erasure, or `cdp keys scrub`",
            )
    return cleared
