"""Key store: each KEK version's state beside its usage count

Revision ID: k0003
Revises: k0002
Create Date: 2026-11-24

``kek_usage.superseded_at`` (set by ``cdp keys rewrap`` on every older version) and
``kek_usage.retired_at`` (set by ``cdp keys retire``): from either on, a wrap under that version
is refused inside the transaction that would store it. Before, a process that had read the key
file before a rotation kept wrapping new data keys under the old version, also after it was
retired and its key destroyed: those subjects' data was unreadable for good.
"""

import sqlalchemy as sa
from alembic import op

import cdp.db.types

revision = "k0003"
down_revision = "k0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("kek_usage") as batch:
        batch.add_column(sa.Column("superseded_at", cdp.db.types.UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("retired_at", cdp.db.types.UtcDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("kek_usage") as batch:
        batch.drop_column("retired_at")
        batch.drop_column("superseded_at")
