"""privacy: a run claims its request (claim_token, claimed_at)

Revision ID: 0012c
Revises: 0011
Create Date: 2026-11-24

A run takes its request with one conditional UPDATE that sets ``claim_token`` and ``claimed_at``
(:func:`cdp.privacy.requests.claim`) and clears them when it ends, so two runs, or a run and a
rejection, can no longer interleave. Both columns are nullable and added in place (no table
rebuild: ``privacy_requests`` is the parent of the request's steps and payloads, which a rebuild
on SQLite with foreign keys on would cascade away); SQLite drops them in place too (3.35+).
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import cdp.db.types

revision = "0012c"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "privacy_requests",
        sa.Column("claim_token", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    )
    op.add_column(
        "privacy_requests",
        sa.Column("claimed_at", cdp.db.types.UtcDateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("privacy_requests", "claimed_at")
    op.drop_column("privacy_requests", "claim_token")
