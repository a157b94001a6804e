"""On SQLite, the export bookkeeping tables are clustered on their keys (``WITHOUT ROWID``);
``export_staging`` loses its action index

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23

An export writes a staging row, a recipients-ledger row and a sync-state row for every subject
it sends, and deletes the staging rows when it ends. As rowid tables each row went into the
table and its primary-key index (and any other index); clustered on the key, the table *is* that
index. ``export_staging``'s ``(export_id, action, subject_id)`` index is dropped on both
backends: every reader pages the export's rows in subject-id order, which the primary key
``(export_id, subject_id)`` already gives, filtering on the action as it goes. The rows are
copied unchanged.
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

STAGING = (
    "export_id VARCHAR(32) NOT NULL, subject_id VARCHAR(32) NOT NULL, "
    "state VARCHAR(16) NOT NULL, action VARCHAR(8) NOT NULL, "
    "PRIMARY KEY (export_id, subject_id)"
)
RECIPIENTS = (
    "export_id VARCHAR(32) NOT NULL, subject_id VARCHAR(32) NOT NULL, "
    "destination_id VARCHAR(20) NOT NULL, op VARCHAR(8) NOT NULL, fields VARCHAR(256) NOT NULL, "
    "at DATETIME NOT NULL, PRIMARY KEY (export_id, subject_id), "
    "FOREIGN KEY(export_id) REFERENCES export_runs (id) ON DELETE CASCADE"
)
SYNC = (
    "destination_id VARCHAR(20) NOT NULL, segment VARCHAR(64) NOT NULL, "
    "subject_id VARCHAR(32) NOT NULL, export_id VARCHAR(32) NOT NULL, "
    "PRIMARY KEY (destination_id, segment, subject_id)"
)
# table, its columns' definition, column names, key (copy order), its other indexes
TABLES = (
    (
        "export_staging",
        STAGING,
        "export_id, subject_id, state, action",
        "export_id, subject_id",
        (),
    ),
    (
        "export_recipients",
        RECIPIENTS,
        "export_id, subject_id, destination_id, op, fields, at",
        "export_id, subject_id",
        (("ix_export_recipients_subject", "subject_id, export_id"),),
    ),
    (
        "export_sync_members",
        SYNC,
        "destination_id, segment, subject_id, export_id",
        "destination_id, segment, subject_id",
        (("ix_export_sync_members_subject", "subject_id"),),
    ),
)


def _rebuild(suffix: str) -> None:
    for table, definition, columns, key, indexes in TABLES:
        op.execute(f"CREATE TABLE {table}_new ({definition}){suffix}")
        op.execute(
            f"INSERT INTO {table}_new ({columns}) "  # noqa: S608 (constant names only)
            f"SELECT {columns} FROM {table} ORDER BY {key}"
        )
        op.execute(f"DROP TABLE {table}")
        op.execute(f"ALTER TABLE {table}_new RENAME TO {table}")
        for name, on in indexes:
            op.execute(f"CREATE INDEX {name} ON {table} ({on})")


def upgrade() -> None:
    op.drop_index("ix_export_staging_action", table_name="export_staging")
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(" WITHOUT ROWID")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild("")
    op.create_index(
        "ix_export_staging_action", "export_staging", ["export_id", "action", "subject_id"]
    )
