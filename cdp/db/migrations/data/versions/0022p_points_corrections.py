"""points ledger: adjustment lines for corrected orders

Revision ID: 0022p_corrections
Revises: 0021w_prevsecret
Create Date: 2026-11-25

A completed order whose value is corrected (a partial refund, a corrected total) gets its points
adjusted by ``adjust`` lines, as many as it has corrections (docs/traits.md, "Points ledger"):

* ``correction``: 0 on every line but adjustments, which number an order's corrections 1, 2, …;
  the unique key ``uq_points_kind_order`` becomes ``(kind, order_id, correction)``, so an order
  still has at most one earn and one reversal line, and each correction one adjustment;
* ``value_units``: on an order's earn and adjust lines, the order's ``value_base`` in whole
  ten-thousandths that the points reflect; a change of it is what a correction is (a new rate
  in the configuration is not one).

Earn lines written before this revision get the value of their order when the order has not
changed since the line was written (``orders.updated_at`` at or before its ``recorded_at``); the
others stay null, and the next points run recomputes their lot at the configured rate: the
orders corrected before this revision, whose points the ledger kept at the old total.

On SQLite the unique key is part of the table, which is rebuilt (a copy of the ledger: a few
seconds a million lines). A downgrade folds each order's adjustments into one line (the key
before allows one per order and kind) and drops both columns.
"""

import sqlalchemy as sa
from alembic import op

revision = "0022p_corrections"
down_revision = "0021w_prevsecret"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("points_ledger", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("correction", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch_op.add_column(sa.Column("value_units", sa.BigInteger(), nullable=True))
        batch_op.drop_constraint("uq_points_kind_order", type_="unique")
        batch_op.create_unique_constraint(
            "uq_points_kind_order", ["kind", "order_id", "correction"]
        )
    # A round trip through the downgrade left one adjustment per order, numbered 0.
    op.execute("UPDATE points_ledger SET correction = 1 WHERE kind = 'adjust'")
    op.execute(
        "UPDATE points_ledger SET value_units = ("
        " SELECT CAST(round(o.value_base * 10000) AS BIGINT) FROM orders o"
        " WHERE o.id = points_ledger.order_id AND o.updated_at <= points_ledger.recorded_at"
        ") WHERE kind = 'earn' AND order_id IS NOT NULL"
    )


def downgrade() -> None:
    op.execute(
        "UPDATE points_ledger SET points = ("
        " SELECT sum(a.points) FROM points_ledger a"
        " WHERE a.kind = 'adjust' AND a.order_id = points_ledger.order_id"
        ") WHERE kind = 'adjust' AND correction = 1"
    )
    op.execute("DELETE FROM points_ledger WHERE kind = 'adjust' AND correction > 1")
    with op.batch_alter_table("points_ledger", schema=None) as batch_op:
        batch_op.drop_constraint("uq_points_kind_order", type_="unique")
        batch_op.create_unique_constraint("uq_points_kind_order", ["kind", "order_id"])
        batch_op.drop_column("value_units")
        batch_op.drop_column("correction")
