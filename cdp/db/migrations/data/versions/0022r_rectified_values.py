"""exports: values a rectification replaced, pending withdrawal at the destinations holding them

Revision ID: 0022r_rectvalues
Revises: 0021w_prevsecret
Create Date: 2026-11-25

``export_rectified_values``: per destination, subject and rectified field, the value the
correction replaced, sealed under the subject's data key where the destination matches removes
on the field (email, phone), else NULL; the destination's next export withdraws it with a
remove and deletes the row (docs/exports.md, "Rectified values"). Erasure deletes the subject's
rows (privacy registry). Empty at creation: rectifications before this revision told no
destination (their requests' outcomes list none).
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import cdp.db.types

revision = "0022r_rectvalues"
down_revision = "0021w_prevsecret"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "export_rectified_values",
        sa.Column("destination_id", sa.String(length=20), nullable=False),
        sa.Column("subject_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("field", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("rectified_at", cdp.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["destination_id"], ["export_destinations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("destination_id", "subject_id", "field"),
    )
    op.create_index("ix_export_rectified_values_subject", "export_rectified_values", ["subject_id"])


def downgrade() -> None:
    op.drop_index("ix_export_rectified_values_subject", table_name="export_rectified_values")
    op.drop_table("export_rectified_values")
