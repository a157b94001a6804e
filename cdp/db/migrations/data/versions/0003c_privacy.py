"""privacy: requests, their events and payloads, restrictions; consent ledger made append-only

Revision ID: 0003c
Revises: 0002
Create Date: 2026-11-23 01:25:05.927007
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import cdp.db.types
from cdp.consent.triggers import install_statements, remove_statements

revision = "0003c"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_unlocks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("at", cdp.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "privacy_requests",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("type", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=32), nullable=True),
        sa.Column("identity_kind", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("identity_token", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("received_at", cdp.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("due_at", cdp.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("extended_until", cdp.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("extension_reason", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=True),
        sa.Column("verified_at", cdp.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("completed_at", cdp.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("requested_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["subject_id"], ["subjects.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("privacy_requests", schema=None) as batch_op:
        batch_op.create_index("ix_privacy_requests_status_due", ["status", "due_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_privacy_requests_subject_id"), ["subject_id"], unique=False
        )

    op.create_table(
        "restrictions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject_id", sa.String(length=32), nullable=False),
        sa.Column("request_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("started_at", cdp.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("lifted_at", cdp.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["subject_id"], ["subjects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("restrictions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_restrictions_subject_id"), ["subject_id"], unique=False
        )

    op.create_table(
        "privacy_payloads",
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=32), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", cdp.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["privacy_requests.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["subject_id"], ["subjects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("request_id", "kind"),
    )
    with op.batch_alter_table("privacy_payloads", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_privacy_payloads_subject_id"), ["subject_id"], unique=False
        )

    op.create_table(
        "privacy_request_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("at", cdp.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=True),
        sa.ForeignKeyConstraint(["request_id"], ["privacy_requests.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("privacy_request_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_privacy_request_events_request_id"), ["request_id"], unique=False
        )

    for statement in install_statements(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for statement in remove_statements(op.get_bind().dialect.name):
        op.execute(statement)
    with op.batch_alter_table("privacy_request_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_privacy_request_events_request_id"))

    op.drop_table("privacy_request_events")
    with op.batch_alter_table("privacy_payloads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_privacy_payloads_subject_id"))

    op.drop_table("privacy_payloads")
    with op.batch_alter_table("restrictions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_restrictions_subject_id"))

    op.drop_table("restrictions")
    with op.batch_alter_table("privacy_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_privacy_requests_subject_id"))
        batch_op.drop_index("ix_privacy_requests_status_due")

    op.drop_table("privacy_requests")
    op.drop_table("ledger_unlocks")
