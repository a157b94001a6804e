"""ingestion: orders.source_updated_at (precedence of order rows of the same status)

Revision ID: 0014i
Revises: 0013c
Create Date: 2026-11-24

The time the shop last changed an order, when a record gives it (``updated_at``): among rows of
one order with the same status, only a strictly later one replaces the stored values, so the
outcome of a file does not depend on its batches and a second run changes nothing.
"""

import sqlalchemy as sa
from alembic import op

import cdp.db.types

revision = "0014i"
down_revision = "0013c"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a plain ADD COLUMN (no batch copy: recreating orders would cascade to its items)
    op.add_column(
        "orders",
        sa.Column("source_updated_at", cdp.db.types.UtcDateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    # a plain DROP COLUMN (SQLite 3.35+, PostgreSQL): no batch copy of orders, for the same reason
    op.execute("ALTER TABLE orders DROP COLUMN source_updated_at")
