"""Leaving no old copy of a destroyed key (or an erased row) in SQLite's files.

A row deleted from SQLite can live on in three places of the file system:

- the page it was on, unless ``secure_delete`` zeroed it (the delete writes a new copy of the
  page, with the row's bytes still in its free space);
- other pages of the database file: a page split or merge moves rows between pages, and without
  ``secure_delete`` the space a row left behind keeps its bytes (measured on a key store of
  100,000 keys: 9 to 13 of 2,000 destroyed keys were still in ``keys.db`` after the deletes and a
  checkpoint when the keys had been written with ``secure_delete`` off; none with it on);
- the write-ahead log (``*-wal``): every earlier copy of every page written since the WAL last
  restarted, until a checkpoint resets it *and* the file is truncated (a restart alone overwrites
  frames from the start, and what lies past the new end stays).

So the key store runs with ``secure_delete`` on for every write (:func:`zero_deleted_content`;
some SQLite builds, not all, default to it), and an erasure ends with :func:`clear_wal` on the key
store and on the data database. PostgreSQL has no such switch: a deleted row stays in the table's
files as a dead tuple until vacuum reuses its space, and in the WAL segments (and their archives)
until they are recycled; see docs/operations.md.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from sqlalchemy import Engine, event

CHECKPOINT_ATTEMPTS = 5
"""Tries of :func:`clear_wal` before it reports that the WAL could not be cleared."""

CHECKPOINT_WAIT_MS = 200
"""How long one try waits for readers of an older snapshot to finish (SQLite's busy timeout for
that statement only; the connection's own 30 s would hold every writer back behind it)."""

CHECKPOINT_PAUSE_SECONDS = 0.05
"""Pause between two tries."""

_FLAG = "cdp_secure_delete"


def _secure_delete_on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
    if record.info.get(_FLAG):
        return
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA secure_delete = ON")
    finally:
        cur.close()
    record.info[_FLAG] = True


def zero_deleted_content(engine: Engine) -> None:
    """Make every connection of ``engine`` (SQLite) overwrite deleted content with zeros, also
    when SQLite moves rows between pages; connections already pooled get it at their next use.
    Nothing to do on PostgreSQL."""
    if engine.dialect.name != "sqlite":
        return
    if not event.contains(engine, "checkout", _secure_delete_on_checkout):
        event.listen(engine, "checkout", _secure_delete_on_checkout)


def clear_wal(engine: Engine) -> bool | None:
    """Fold the WAL of ``engine``'s SQLite database into the database file and truncate it to
    zero bytes (``PRAGMA wal_checkpoint(TRUNCATE)``), so that no earlier copy of a page is left
    in the WAL. True when done; False when a reader of an older snapshot (or a writer) kept it
    from completing through every try — the WAL then still holds old copies until the next
    successful call; None when the database is not SQLite.

    Each try waits at most ``CHECKPOINT_WAIT_MS`` for the readers, so writers queued behind the
    checkpoint are not held back longer than that."""
    if engine.dialect.name != "sqlite":
        return None
    raw = engine.raw_connection()
    try:
        dbapi: sqlite3.Connection = raw.driver_connection  # type: ignore[assignment]
        cur = dbapi.cursor()
        try:
            previous = int(cur.execute("PRAGMA busy_timeout").fetchone()[0])
            cur.execute(f"PRAGMA busy_timeout = {int(CHECKPOINT_WAIT_MS)}")
            try:
                for attempt in range(CHECKPOINT_ATTEMPTS):
                    if attempt:
                        time.sleep(CHECKPOINT_PAUSE_SECONDS)
                    try:
                        busy = cur.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                    except sqlite3.OperationalError:  # locked past the wait: try again
                        continue
                    if int(busy) == 0:
                        return True
                return False
            finally:
                cur.execute(f"PRAGMA busy_timeout = {previous}")
        finally:
            cur.close()
    finally:
        raw.close()


def vacuum(engine: Engine) -> None:
    """Rebuild ``engine``'s SQLite database file from its live rows (``VACUUM``), so that no free
    space in it keeps content deleted while ``secure_delete`` was off (a key store written by a
    release before it was always on, with an SQLite build that defaults to off). The rebuilt
    pages pass through the WAL: clear it afterwards (:func:`clear_wal`). Not for PostgreSQL."""
    if engine.dialect.name != "sqlite":
        raise ValueError("VACUUM of the database file is for SQLite only")
    raw = engine.raw_connection()
    try:
        cur = raw.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cur.execute("PRAGMA secure_delete = ON")
            cur.execute("VACUUM")
        finally:
            cur.close()
    finally:
        raw.close()
