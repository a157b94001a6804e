"""ingestion: subjects.profile_as_of (precedence of customer records over PII values)

Revision ID: 0003i
Revises: 0002
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

import cdp.db.types

revision = "0003i"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a plain ADD COLUMN (no batch copy: recreating subjects would cascade to its children)
    op.add_column(
        "subjects",
        sa.Column("profile_as_of", cdp.db.types.UtcDateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    with op.batch_alter_table("subjects", schema=None) as batch_op:
        batch_op.drop_column("profile_as_of")
