"""audit: PostgreSQL also refuses TRUNCATE of the audit tables, and index rows the writer never adds

Revision ID: 0016a
Revises: 0015o
Create Date: 2026-11-24

The subject access report reads ``audit_subjects``, which the hash chain does not cover
(``cdp audit verify`` now checks it against the records' ``subject_ids``). Migration 0003a's
trigger rejects UPDATE and DELETE on ``audit_log`` and ``audit_subjects``; this one adds, on
PostgreSQL:

- ``BEFORE TRUNCATE`` on both tables (the same function as 0003a's): emptying the log or its index
  is no longer one statement away. Maintenance that must (the test suite between tests) sets
  ``session_replication_role = replica`` for its transaction, which needs a superuser.
- On INSERT into ``audit_subjects``, a check of the rows added (a statement-level trigger over the
  inserted rows): the writer adds the index rows of the records it appends, in the same
  transaction, after the records and before it moves the chain's head. So a row must name a record
  that exists and lies past the head; a row for an older record (attributing it to someone it does
  not name) or for a record not yet written is refused. (Whoever may also move the head, as the
  writer's role may, can still get round it: ``verify`` is what finds a wrong index.)

SQLite has no such triggers (whoever can write the file can rewrite anything); ``verify`` finds
what was changed there.
"""

from alembic import op

revision = "0016a"
down_revision = "0015o"
branch_labels = None
depends_on = None

_INDEX_INSERT_FUNCTION = """
CREATE OR REPLACE FUNCTION cdp_audit_subjects_insert() RETURNS trigger AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM added a
        WHERE a.seq <= COALESCE(
            (SELECT h.seq FROM audit_head h WHERE h.id = 1),  -- the writer creates it first
            (SELECT max(l.seq) FROM audit_log l),
            0
        )
           OR NOT EXISTS (SELECT 1 FROM audit_log l WHERE l.seq = a.seq)
    ) THEN
        RAISE EXCEPTION 'audit_subjects only takes the rows of records being appended'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in ("audit_log", "audit_subjects"):
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION cdp_audit_append_only()"
        )
    op.execute(_INDEX_INSERT_FUNCTION)
    op.execute(
        "CREATE TRIGGER audit_subjects_insert_guard AFTER INSERT ON audit_subjects "
        "REFERENCING NEW TABLE AS added FOR EACH STATEMENT "
        "EXECUTE FUNCTION cdp_audit_subjects_insert()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS audit_subjects_insert_guard ON audit_subjects")
    op.execute("DROP FUNCTION IF EXISTS cdp_audit_subjects_insert()")
    for table in ("audit_log", "audit_subjects"):
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
