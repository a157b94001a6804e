"""orders: drop ix_orders_subject_id (ix_orders_subject_time_value leads with subject_id)

Revision ID: 0015o
Revises: 0014i
Create Date: 2026-11-24

Every lookup of a subject's orders (profile reads, erasure's unlink, merges, the foreign key's
``ON DELETE SET NULL``) is served by ``ix_orders_subject_time_value (subject_id, ordered_at,
value_base)``; the single-column index only cost a B-tree insert per order ingested (about 3 µs
of the ~45 µs an order takes on SQLite).
"""

from alembic import op

revision = "0015o"
down_revision = "0014i"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_orders_subject_id", table_name="orders")


def downgrade() -> None:
    op.create_index("ix_orders_subject_id", "orders", ["subject_id"], unique=False)
