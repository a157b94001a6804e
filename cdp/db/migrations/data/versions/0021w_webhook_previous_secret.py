"""exports: a webhook keeps the signing secret a rotation replaced, for an overlap window

Revision ID: 0021w_prevsecret
Revises: 0020_pointsidx
Create Date: 2026-11-24

``export_destinations.previous_secret_ct`` / ``previous_secret_kek_version``: the secret
``rotate-secret`` replaced, wrapped under the key-encryption key exactly as the current one is
(bound to the destination id); ``previous_secret_until``: until when it signs each batch beside
the new one (docs/exports.md, "Rotating the signing secret"). Null for every existing row: no
rotation before this revision kept the old secret.
"""

import sqlalchemy as sa
from alembic import op

import cdp.db.types

revision = "0021w_prevsecret"
down_revision = "0020_pointsidx"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "export_destinations", sa.Column("previous_secret_ct", sa.LargeBinary(), nullable=True)
    )
    op.add_column(
        "export_destinations",
        sa.Column("previous_secret_kek_version", sa.Integer(), nullable=True),
    )
    op.add_column(
        "export_destinations",
        sa.Column("previous_secret_until", cdp.db.types.UtcDateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    # the old secrets go: the schema before this revision had no place for them (SQLite 3.35+)
    for column in ("previous_secret_until", "previous_secret_kek_version", "previous_secret_ct"):
        op.execute(f"ALTER TABLE export_destinations DROP COLUMN {column}")
