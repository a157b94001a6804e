"""subject_traits.first_day_value: the value of a subject's first purchase day

Revision ID: 0005t
Revises: 0004
Create Date: 2026-11-23

The CLV summary needs the value of the first purchase occasion (Gamma-Gamma's spend per repeat
occasion leaves it out); kept with the other order facts, the summary is a scan of
``subject_traits`` instead of every order. NULL for prospects and for rows written before this
revision (the next ``cdp traits compute`` fills it).
"""

import sqlalchemy as sa
from alembic import op

revision = "0005t"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subject_traits") as batch_op:
        batch_op.add_column(sa.Column("first_day_value", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subject_traits") as batch_op:
        batch_op.drop_column("first_day_value")
