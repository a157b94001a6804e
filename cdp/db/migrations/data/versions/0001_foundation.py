"""Foundation: subjects, identities, encrypted PII values, tombstones.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

import cdp.db.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subjects",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("created_at", cdp.db.types.UtcDateTime(), nullable=False),
        sa.Column("updated_at", cdp.db.types.UtcDateTime(), nullable=False),
    )
    op.create_table(
        "identities",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "subject_id",
            sa.String(length=32),
            sa.ForeignKey("subjects.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("created_at", cdp.db.types.UtcDateTime(), nullable=False),
        sa.UniqueConstraint("kind", "token", name="uq_identities_kind_token"),
    )
    op.create_index("ix_identities_subject", "identities", ["subject_id"])
    op.create_table(
        "pii_values",
        sa.Column(
            "subject_id",
            sa.String(length=32),
            sa.ForeignKey("subjects.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("field", sa.String(length=64), primary_key=True),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", cdp.db.types.UtcDateTime(), nullable=False),
    )
    op.create_table(
        "tombstones",
        sa.Column("kind", sa.String(length=32), primary_key=True),
        sa.Column("token", sa.String(length=64), primary_key=True),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("erased_at", cdp.db.types.UtcDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tombstones")
    op.drop_table("pii_values")
    op.drop_index("ix_identities_subject", table_name="identities")
    op.drop_table("identities")
    op.drop_table("subjects")
