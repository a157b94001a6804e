"""Join the branches written side by side from 0002 (access and audit, privacy, exports,
ingestion, traits and segments) into one head.

Revision ID: 0004
Revises: 0003a, 0003c, 0003e, 0003i, 0003t
Create Date: 2026-11-23
"""

revision = "0004"
down_revision = ("0003a", "0003c", "0003e", "0003i", "0003t")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
