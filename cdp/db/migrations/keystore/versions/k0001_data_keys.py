"""Key store: wrapped data keys and KEK usage counters.

Revision ID: k0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

import cdp.db.types

revision = "k0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "data_keys",
        sa.Column("subject_id", sa.String(length=32), primary_key=True),
        sa.Column("dek_version", sa.Integer(), nullable=False),
        sa.Column("kek_version", sa.Integer(), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", cdp.db.types.UtcDateTime(), nullable=False),
        sa.Column("rewrapped_at", cdp.db.types.UtcDateTime(), nullable=True),
    )
    op.create_index("ix_data_keys_kek_version", "data_keys", ["kek_version"])
    op.create_table(
        "kek_usage",
        sa.Column("kek_version", sa.Integer(), primary_key=True),
        sa.Column("wraps", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("kek_usage")
    op.drop_index("ix_data_keys_kek_version", table_name="data_keys")
    op.drop_table("data_keys")
