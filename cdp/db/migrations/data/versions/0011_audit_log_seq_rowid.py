"""On SQLite, ``audit_log``'s sequence number is the table's rowid

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23

``seq`` was declared ``BIGINT``, which SQLite does not take as an alias of the rowid: every record
went into the table (keyed by a hidden rowid) and into a separate unique index on ``seq``, and
every read by sequence number (verification, reports) went through that index to the table.
Declared ``INTEGER``, ``seq`` is the rowid: one B-tree fewer per append, and ranges of sequence
numbers read the table itself (a bulk insert of 300,000 records 74,534 to 90,176 rows/s, streaming
them in order 171,877 to 188,412 rows/s). The table is rebuilt with every record copied
unchanged (the chain verifies the same); its two time indexes are made again. PostgreSQL keeps
``BIGINT`` (no rowid there): nothing to do.
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

COLUMNS = (
    "at DATETIME NOT NULL, principal_id VARCHAR(64) NOT NULL, "
    "principal_name VARCHAR(64) NOT NULL, roles VARCHAR(256) NOT NULL, "
    "action VARCHAR(32) NOT NULL, resource VARCHAR(64) NOT NULL, subject_ids TEXT NOT NULL, "
    "fields TEXT NOT NULL, purpose VARCHAR(32) NOT NULL, outcome VARCHAR(8) NOT NULL, "
    "request_id VARCHAR(64) NOT NULL, client VARCHAR(128) NOT NULL, "
    "prev_hash VARCHAR(64) NOT NULL, hash VARCHAR(64) NOT NULL, PRIMARY KEY (seq)"
)
NAMES = (
    "seq, at, principal_id, principal_name, roles, action, resource, subject_ids, fields, "
    "purpose, outcome, request_id, client, prev_hash, hash"
)


def _rebuild(seq_type: str) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(f"CREATE TABLE audit_log_new (seq {seq_type} NOT NULL, {COLUMNS})")
    copy = f"INSERT INTO audit_log_new ({NAMES}) SELECT {NAMES} FROM audit_log ORDER BY seq"  # noqa: S608 - constant column names
    op.execute(copy)
    op.execute("DROP TABLE audit_log")
    op.execute("ALTER TABLE audit_log_new RENAME TO audit_log")
    op.execute("CREATE INDEX ix_audit_log_at ON audit_log (at)")
    op.execute("CREATE INDEX ix_audit_log_principal_at ON audit_log (principal_id, at)")


def upgrade() -> None:
    _rebuild("INTEGER")


def downgrade() -> None:
    _rebuild("BIGINT")
