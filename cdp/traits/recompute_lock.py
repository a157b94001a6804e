"""The recompute steps and the transactions that delete or move subjects: one after the other.

A trait recompute reads orders, events and subjects and writes tables of its own, a step per
transaction: ``subject_traits`` (order traits), ``loyalty_status`` and ``loyalty_tier_changes``
(tiers), ``points_ledger`` (points) and ``clv_predictions`` (CLV), the :data:`LOCKED` tables. A
merge moves a subject's orders, events and rows of those tables to another subject and deletes
it; an erasure unlinks or deletes them and deletes it. A step that overlapped one of them would
store a mix of before and after: traits from the survivor's own orders only, stamped after the
merge committed, or points lines whose subject is gone by the time their foreign-key check runs
(which then fails the step). So on PostgreSQL the two exclude each other:

* a step runs inside :func:`step_lock`, which first takes ``SHARE ROW EXCLUSIVE`` on the tables
  the step writes, *before* the step reads anything: reads go on, but every other writer of
  those tables (another recompute, an erasure, a merge, retention) waits for the step's commit,
  and each statement of the step takes its snapshot after the lock, so a merge or erasure
  committed before the lock is seen whole and one not yet committed is not seen at all;
* a transaction that deletes or moves subjects (a merge, an erasure), or deletes rows the points
  ledger references (retention deletes old events), calls :func:`exclude_recomputes` before it
  locks or changes any of those rows: ``ROW EXCLUSIVE`` on every :data:`LOCKED` table, which
  waits for the steps in progress and holds new ones off until it commits. Taking it first
  keeps the lock order one way: the points step's foreign-key checks (``FOR KEY SHARE`` on a
  subject, an order, an event) could otherwise wait for a merge that holds its subjects and
  waits for the step's table, a deadlock.

Every lock is taken in :data:`LOCKED` order (the privacy registry's erasure order), so two
transactions never wait for each other's table; a step never waits for a row lock of a
transaction that holds one of its tables, since those take the tables first. Other writers of
orders and events (ingestion) are not held off: a step reads what was committed when its
statement began, and new orders count at the next run.

The tables other than the points ledger name their subject without a foreign key (on PostgreSQL
a key would check every written row on its own, a trigger query and a row lock on the subject,
~9 µs a row: more than half of a full recompute); a step's rows name subjects that exist when it
writes them: rows from an ``INSERT ... SELECT`` pass :func:`subject_exists`, rows copied in from
Python are swept with :func:`drop_orphans`; every transaction that deletes a subject writes to
each of these tables too (erasure deletes its rows through :mod:`cdp.privacy.registry`, a merge
moves or drops them in :mod:`cdp.profiles.merge`).

SQLite needs no lock for this: a step's or a merge's transaction holds the database's write lock
from its ``BEGIN IMMEDIATE`` to its commit; the same statements run, so both backends store the
same rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import sqlalchemy as sa

from cdp.db.models import Subject

#: The recomputed tables without a foreign key to ``subjects``, in lock order.
RECOMPUTED: Final = ("subject_traits", "loyalty_status", "loyalty_tier_changes", "clv_predictions")
#: Every table a recompute step writes, in the order they are locked (the privacy registry's).
LOCKED: Final = (
    "subject_traits",
    "loyalty_status",
    "loyalty_tier_changes",
    "points_ledger",
    "clv_predictions",
)

subjects_t = Subject.__table__  # type: ignore[attr-defined]


def _lock(conn: sa.Connection, names: list[str], mode: str) -> None:
    prep = conn.dialect.identifier_preparer
    targets = ", ".join(prep.quote(name) for name in names)  # names from LOCKED
    conn.exec_driver_sql(f"LOCK TABLE {targets} IN {mode} MODE")


@contextmanager
def step_lock(conn: sa.Connection, *tables: sa.Table) -> Iterator[None]:
    """Run the block, a whole recompute step (its reads too), with the other writers of
    ``tables`` (all of them in :data:`LOCKED`) held off until the transaction ends
    (PostgreSQL). Enter it before the step's first read."""
    names = {t.name for t in tables}
    unknown = names.difference(LOCKED)
    if unknown:
        raise ValueError(f"not a recomputed table: {sorted(unknown)}")
    if conn.dialect.name != "sqlite":
        _lock(conn, [name for name in LOCKED if name in names], "SHARE ROW EXCLUSIVE")
    yield


def exclude_recomputes(conn: sa.Connection) -> None:
    """Wait for the recompute steps in progress and hold new ones off until the transaction
    ends (PostgreSQL; SQLite's writer holds the database already). Call it before the
    transaction locks or changes a subject, or an order or event the points ledger refers to.
    Other writers and every reader are not held off (``ROW EXCLUSIVE`` conflicts only with the
    steps' lock)."""
    if conn.dialect.name != "sqlite":
        _lock(conn, list(LOCKED), "ROW EXCLUSIVE")


def subject_exists(subject_id: Any) -> sa.ColumnElement[bool]:
    """The row's subject exists (a semi-join; for the ``WHERE`` of an ``INSERT ... SELECT``)."""
    return sa.exists().where(subjects_t.c.id == subject_id)


def drop_orphans(conn: sa.Connection, table: sa.Table) -> int:
    """Delete ``table``'s rows whose subject does not exist; returns how many."""
    result = conn.execute(sa.delete(table).where(~subject_exists(table.c.subject_id)))
    return int(result.rowcount or 0)
