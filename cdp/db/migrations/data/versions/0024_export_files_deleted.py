"""exports: when retention deleted a run's files

Revision ID: 0024_exportfiles
Revises: 0023
Create Date: 2026-11-25

``export_runs.files_deleted_at``: when retention deleted the files the run wrote under
``CDP_EXPORT_DIR`` (``CDP_EXPORT_FILE_DAYS`` after it finished; docs/exports.md, "How long the
files stay"). Null for every existing row: their files, if any, are still there, and the next
retention run deletes those past the window.
"""

import sqlalchemy as sa
from alembic import op

import cdp.db.types

revision = "0024_exportfiles"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "export_runs",
        sa.Column("files_deleted_at", cdp.db.types.UtcDateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.execute("ALTER TABLE export_runs DROP COLUMN files_deleted_at")  # SQLite 3.35+
