"""Key store: a key-check value for each KEK and pseudonym-key version

Revision ID: k0004
Revises: k0003
Create Date: 2026-11-24

``key_checks`` holds, per ring (``kek``, ``pseudonym``) and version, HMAC-SHA256 of a fixed label
under that key, truncated (never the key). Every process compares its key file with it at start
(and ``/readyz`` does): a key file restored from an older backup, or taken from another
installation, is refused instead of minting a second "version 4" or tokenising people anew.
Rows are written when a version is created (``cdp keys rotate``) or first seen by a process.
"""

import sqlalchemy as sa
from alembic import op

import cdp.db.types

revision = "k0004"
down_revision = "k0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "key_checks",
        sa.Column("ring", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("check_value", sa.String(64), nullable=False),
        sa.Column("recorded_at", cdp.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("ring", "version"),
    )


def downgrade() -> None:
    op.drop_table("key_checks")
