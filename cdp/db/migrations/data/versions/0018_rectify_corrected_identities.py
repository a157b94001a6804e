"""privacy: identity tokens corrected away by a rectification

Revision ID: 0018_rectify
Revises: 0017s
Create Date: 2026-11-24

A rectification of an email or phone removes the corrected value's identity token from the person.
``rectified_identities`` keeps that token (no subject id, like a tombstone) so that ingestion
refuses a later record carrying the value as ``rectified`` instead of giving it back to the person
or creating a new person with default consent.
"""

import sqlalchemy as sa
from alembic import op

import cdp.db.types

revision = "0018_rectify"
down_revision = "0017s"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rectified_identities",
        sa.Column("kind", sa.String(length=32), primary_key=True),
        sa.Column("token", sa.String(length=64), primary_key=True),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("rectified_at", cdp.db.types.UtcDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rectified_identities")
