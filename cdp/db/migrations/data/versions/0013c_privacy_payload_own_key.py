"""privacy: a payload may be encrypted under its request's own key (subject_id nullable)

Revision ID: 0013c
Revises: 0012c
Create Date: 2026-11-24

The corrections of a rectification filed before the person is known have no subject whose key
could encrypt them; they are kept under a data key named by the request
(:func:`cdp.privacy.models.payload_owner`), with ``subject_id`` NULL, instead of being dropped.
On SQLite the column changes through a rebuild of ``privacy_payloads`` (no table references it,
so nothing cascades). Downgrading deletes such payloads: the old schema cannot hold them.
"""

import sqlalchemy as sa
from alembic import op

revision = "0013c"
down_revision = "0012c"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("privacy_payloads", schema=None) as batch_op:
        batch_op.alter_column("subject_id", existing_type=sa.String(length=32), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM privacy_payloads WHERE subject_id IS NULL")
    with op.batch_alter_table("privacy_payloads", schema=None) as batch_op:
        batch_op.alter_column("subject_id", existing_type=sa.String(length=32), nullable=False)
