"""audit: SQLite too refuses UPDATE and DELETE on the audit tables

Revision ID: 0017s
Revises: 0016a
Create Date: 2026-11-24

Migration 0003a gave PostgreSQL a trigger that rejects UPDATE and DELETE on ``audit_log`` and
``audit_subjects``; SQLite had none, so a code path that changed a record there would only have
been caught by ``cdp audit verify`` afterwards. These triggers make the statement itself fail
with "the audit log is append-only" (a ``DELETE`` without ``WHERE`` included: SQLite runs row
triggers instead of its truncate shortcut). Whoever can write the database file can still drop
them, as an owner can on PostgreSQL: ``verify`` remains what proves the log intact.
"""

from alembic import op

revision = "0017s"
down_revision = "0016a"
branch_labels = None
depends_on = None

_TABLES = ("audit_log", "audit_subjects")
_OPERATIONS = ("UPDATE", "DELETE")


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in _TABLES:
        for operation in _OPERATIONS:
            op.execute(
                f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: {operation} on "
                f"{table} is not allowed'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in _TABLES:
        for operation in _OPERATIONS:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{operation.lower()}")
