"""The recomputed trait tables and ``subjects``: consistent without foreign keys.

``subject_traits``, ``loyalty_status``, ``loyalty_tier_changes`` and ``clv_predictions`` are
rewritten by set-based recomputes, a million rows at a time. A foreign key to ``subjects``
would check every written row on its own (on PostgreSQL a trigger query and a row lock on the
subject, ~9 µs a row: more than half of a full recompute there), so these tables have none, and
the code that writes and deletes their rows keeps them consistent instead:

* a recompute writes them inside :func:`write_phase`, which on PostgreSQL first takes
  ``SHARE ROW EXCLUSIVE`` on the tables it names: reads go on, every other writer of those
  tables waits for the recompute's commit (another recompute, an erasure, a merge);
* every row it writes names a subject that exists when the writing statement runs: rows from
  an ``INSERT ... SELECT`` pass :func:`subject_exists`, rows copied in from Python are swept
  with :func:`drop_orphans` before the commit;
* every transaction that deletes a subject writes to each of these tables too (erasure deletes
  its rows through :mod:`cdp.privacy.registry`, a merge moves or drops them in
  :mod:`cdp.profiles.merge`), so it cannot commit between the recompute's lock and its commit:
  a subject deleted before the lock is already gone from the recompute's statements (each
  takes its snapshot after the lock), one deleted later waits, then removes what the
  recompute wrote.

SQLite needs no lock for this: a recompute's transaction holds the database's write lock from
its ``BEGIN IMMEDIATE``; the same statements run there, so both backends store the same rows.
Tables are locked in :data:`RECOMPUTED` order, the order erasure writes them in, so that two
transactions never wait for each other's table.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import sqlalchemy as sa

from cdp.db.models import Subject

#: The recomputed tables, in the order they are locked (the privacy registry's order).
RECOMPUTED: Final = ("subject_traits", "loyalty_status", "loyalty_tier_changes", "clv_predictions")

subjects_t = Subject.__table__  # type: ignore[attr-defined]


@contextmanager
def write_phase(conn: sa.Connection, *tables: sa.Table) -> Iterator[None]:
    """Run the block's writes to ``tables`` (all of them in :data:`RECOMPUTED`) with the other
    writers of those tables held off until the transaction ends (PostgreSQL)."""
    names = {t.name for t in tables}
    unknown = names.difference(RECOMPUTED)
    if unknown:
        raise ValueError(f"not a recomputed table: {sorted(unknown)}")
    if conn.dialect.name != "sqlite":
        prep = conn.dialect.identifier_preparer
        ordered = [t for name in RECOMPUTED for t in tables if t.name == name]
        targets = ", ".join(prep.format_table(t) for t in ordered)  # names from the model
        conn.exec_driver_sql(f"LOCK TABLE {targets} IN SHARE ROW EXCLUSIVE MODE")
    yield


def subject_exists(subject_id: Any) -> sa.ColumnElement[bool]:
    """The row's subject exists (a semi-join; for the ``WHERE`` of an ``INSERT ... SELECT``)."""
    return sa.exists().where(subjects_t.c.id == subject_id)


def drop_orphans(conn: sa.Connection, table: sa.Table) -> int:
    """Delete ``table``'s rows whose subject does not exist; returns how many."""
    result = conn.execute(sa.delete(table).where(~subject_exists(table.c.subject_id)))
    return int(result.rowcount or 0)
