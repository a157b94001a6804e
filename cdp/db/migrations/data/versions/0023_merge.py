"""Join the two revisions written side by side on 0021w (points corrections, rectified values
pending for destinations) into one head.

Revision ID: 0023
Revises: 0022p_corrections, 0022r_rectvalues
Create Date: 2026-11-25
"""

revision = "0023"
down_revision = ("0022p_corrections", "0022r_rectvalues")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
