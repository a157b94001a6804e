"""exports: the sync state tells confirmed rows from rows the destination may hold

Revision ID: 0019_exportsync
Revises: 0018_rectify
Create Date: 2026-11-24

``export_sync_members.confirmed``: true (every existing row) when a run that ended normally
sent the subject's add; false when a dead-lettered webhook batch, or a run that failed or died
after data left, may have left the subject at the destination. Before, such subjects were kept
out of the sync state, so a later consent withdrawal never became a remove for them; now the
next run sends them again while they are eligible and withdraws them once they are not
(docs/exports.md, "Incremental sync"). SQLite adds the column in place (a ``WITHOUT ROWID``
table takes ``ADD COLUMN`` like any other).
"""

import sqlalchemy as sa
from alembic import op

revision = "0019_exportsync"
down_revision = "0018_rectify"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "export_sync_members",
        sa.Column("confirmed", sa.Boolean(), nullable=False, server_default=sa.true()),
    )


def downgrade() -> None:
    # the unconfirmed rows go: the schema before this revision kept them out of the sync state
    op.execute("DELETE FROM export_sync_members WHERE NOT confirmed")
    op.execute("ALTER TABLE export_sync_members DROP COLUMN confirmed")  # (SQLite 3.35+ too)
