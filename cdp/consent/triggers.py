"""Database triggers that make the consent ledger append-only, and the one way through them.

``consent_events`` rejects UPDATE and DELETE at the database, on PostgreSQL (a PL/pgSQL trigger,
as for the audit log) and on SQLite (``RAISE(ABORT)`` triggers), whatever code or tool issues them.

Two writes are legitimate and pass:

- *Moving a subject's rows to the survivor of a merge*: an UPDATE that changes ``subject_id`` and
  nothing else passes when ``subject_merges`` records that the new subject absorbed the old one
  (record the merge first, then move the rows). The evidence itself is untouched.
- *Erasure and retention*, which must remove a person's consent rows like any other of their data,
  open the ledger for the current transaction only with :func:`ledger_unlocked`. On PostgreSQL
  that is ``SET LOCAL cdp.ledger_unlock = 'on'`` (a transaction-local setting: it cannot outlive
  or leak out of the transaction). SQLite has no such settings, so a row in ``ledger_unlocks`` is
  inserted and removed again inside the same transaction; SQLite's single writer means no other
  connection ever sees it.

TRUNCATE is not caught (it needs table ownership, which the application role should not have in
production; the test fixtures use it to empty databases).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cdp.privacy.models import LedgerUnlock

MESSAGE = "consent_events is append-only"

POSTGRES_UP = (
    """
CREATE OR REPLACE FUNCTION consent_events_append_only() RETURNS trigger AS $$
BEGIN
    IF current_setting('cdp.ledger_unlock', true) = 'on' THEN
        IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE'
       AND (to_jsonb(NEW) - 'subject_id') = (to_jsonb(OLD) - 'subject_id')
       AND EXISTS (SELECT 1 FROM subject_merges m
                   WHERE m.survivor_id = NEW.subject_id AND m.merged_id = OLD.subject_id) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'consent_events is append-only: % rejected', TG_OP
        USING ERRCODE = '42501', HINT = 'a merge: insert its subject_merges row first';
END
$$ LANGUAGE plpgsql
""",
    """
CREATE TRIGGER consent_events_append_only BEFORE UPDATE OR DELETE ON consent_events
FOR EACH ROW EXECUTE FUNCTION consent_events_append_only()
""",
)

POSTGRES_DOWN = (
    "DROP TRIGGER IF EXISTS consent_events_append_only ON consent_events",
    "DROP FUNCTION IF EXISTS consent_events_append_only()",
)

SQLITE_UP = (
    """
CREATE TRIGGER consent_events_no_update BEFORE UPDATE ON consent_events
WHEN NOT EXISTS (SELECT 1 FROM ledger_unlocks)
 AND NOT (NEW.id IS OLD.id
          AND NEW.purpose IS OLD.purpose
          AND NEW.status IS OLD.status
          AND NEW.occurred_at IS OLD.occurred_at
          AND NEW.recorded_at IS OLD.recorded_at
          AND NEW.source IS OLD.source
          AND NEW.notice_version IS OLD.notice_version
          AND NEW.mechanism IS OLD.mechanism
          AND NEW.recorded_by IS OLD.recorded_by
          AND NEW.dedupe_key IS OLD.dedupe_key
          AND EXISTS (SELECT 1 FROM subject_merges
                      WHERE survivor_id = NEW.subject_id AND merged_id = OLD.subject_id))
BEGIN
    SELECT RAISE(ABORT, 'consent_events is append-only: UPDATE rejected (merge? log it first)');
END
""",
    """
CREATE TRIGGER consent_events_no_delete BEFORE DELETE ON consent_events
WHEN NOT EXISTS (SELECT 1 FROM ledger_unlocks)
BEGIN SELECT RAISE(ABORT, 'consent_events is append-only: DELETE rejected'); END
""",
)

SQLITE_DOWN = (
    "DROP TRIGGER IF EXISTS consent_events_no_update",
    "DROP TRIGGER IF EXISTS consent_events_no_delete",
)


def install_statements(dialect: str) -> tuple[str, ...]:
    """The DDL that installs the triggers on ``dialect`` (used by migration 0003c)."""
    return POSTGRES_UP if dialect == "postgresql" else SQLITE_UP


def remove_statements(dialect: str) -> tuple[str, ...]:
    return POSTGRES_DOWN if dialect == "postgresql" else SQLITE_DOWN


def _aborted(conn: Connection) -> bool:
    """Whether the connection's PostgreSQL transaction failed (psycopg: ``INERROR``)."""
    raw = conn.connection.dbapi_connection
    status = getattr(getattr(raw, "info", None), "transaction_status", None)
    return getattr(status, "name", None) == "INERROR"


@contextmanager
def ledger_unlocked(conn: Connection, *, reason: str) -> Iterator[None]:
    """Allow UPDATE/DELETE of consent rows inside the caller's open transaction, then lock again.

    Only erasure and retention (and, if they need more than a subject move, merges) use it;
    ``reason`` names the caller (e.g. ``erasure``) for anyone inspecting a live transaction."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL cdp.ledger_unlock = 'on'")
        try:
            yield
        finally:
            # after a failed statement (a deadlock, say) the transaction can only roll back, which
            # undoes SET LOCAL: resetting it would fail and mask the error being raised
            if not _aborted(conn):
                conn.exec_driver_sql("SET LOCAL cdp.ledger_unlock = 'off'")
        return
    table = LedgerUnlock.__table__  # type: ignore[attr-defined]
    unlock_id = conn.execute(
        sa.insert(table).values(reason=reason[:32]).returning(table.c.id)
    ).scalar_one()
    try:
        yield
    finally:
        conn.execute(sa.delete(table).where(table.c.id == unlock_id))
