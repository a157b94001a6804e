"""points ledger: indexes on the order and event a line comes from

Revision ID: 0020_pointsidx
Revises: 0019_exportsync
Create Date: 2026-11-24

``points_ledger.order_id`` and ``event_id`` refer to ``orders`` and ``events`` with ``ON DELETE
SET NULL``; the unique keys on them lead with ``kind``, so deleting one order or event made the
database scan the whole ledger for lines to update. Retention deletes events past their window
by the tens of thousands (30,708 on the default demo shop, against 68,275 ledger lines: minutes of
one core, holding the write lock). With an index led by each link, each delete is one probe.
"""

from alembic import op

revision = "0020_pointsidx"
down_revision = "0019_exportsync"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_points_order", "points_ledger", ["order_id"])
    op.create_index("ix_points_event", "points_ledger", ["event_id"])


def downgrade() -> None:
    op.drop_index("ix_points_event", table_name="points_ledger")
    op.drop_index("ix_points_order", table_name="points_ledger")
