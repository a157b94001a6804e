"""exports: destinations, runs and manifests, staging, recipients ledger, sync state, webhook
deliveries, schedules

Revision ID: 0003e
Revises: 0002
Create Date: 2026-11-23 01:40:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import cdp.db.types

revision = "0003e"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "export_destinations",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("purpose", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("fields", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("min_audience", sa.Integer(), nullable=False),
        sa.Column("url", sqlmodel.sql.sqltypes.AutoString(length=2048), nullable=True),
        sa.Column("secret_ct", sa.LargeBinary(), nullable=True),
        sa.Column("secret_kek_version", sa.Integer(), nullable=True),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("timeout_seconds", sa.Float(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", cdp.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", cdp.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "export_staging",
        sa.Column("export_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("subject_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.PrimaryKeyConstraint("export_id", "subject_id"),
    )
    op.create_index(
        "ix_export_staging_action",
        "export_staging",
        ["export_id", "action", "subject_id"],
        unique=False,
    )
    op.create_table(
        "export_sync_members",
        sa.Column("destination_id", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("segment", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("subject_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("export_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.PrimaryKeyConstraint("destination_id", "segment", "subject_id"),
    )
    op.create_index(
        "ix_export_sync_members_subject", "export_sync_members", ["subject_id"], unique=False
    )
    op.create_table(
        "export_runs",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("segment", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("rule_version", sa.Integer(), nullable=True),
        sa.Column("destination_id", sa.String(length=20), nullable=False),
        sa.Column("purpose", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("principal_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("principal_name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("request_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("policy_version", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("full", sa.Boolean(), nullable=False),
        sa.Column("schedule_id", sa.Integer(), nullable=True),
        sa.Column("started_at", cdp.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("consent_snapshot_at", cdp.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", cdp.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("members", sa.Integer(), nullable=False),
        sa.Column("excluded_consent", sa.Integer(), nullable=False),
        sa.Column("excluded_restriction", sa.Integer(), nullable=False),
        sa.Column("skipped_no_data", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("removed", sa.Integer(), nullable=False),
        sa.Column("failed_delivery", sa.Integer(), nullable=False),
        sa.Column("output_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("output_path", sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=True),
        sa.Column("error_code", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("manifest", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["destination_id"], ["export_destinations.id"], ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_export_runs_dest_segment",
        "export_runs",
        ["destination_id", "segment", "id"],
        unique=False,
    )
    op.create_table(
        "export_schedules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("segment", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("destination_id", sa.String(length=20), nullable=False),
        sa.Column("principal_name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("every_seconds", sa.Integer(), nullable=False),
        sa.Column("next_run_at", cdp.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_run_at", cdp.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_export_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("last_status", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", cdp.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["destination_id"], ["export_destinations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "export_recipients",
        sa.Column("export_id", sa.String(length=32), nullable=False),
        sa.Column("subject_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("destination_id", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("op", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("fields", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("at", cdp.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["export_id"], ["export_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("export_id", "subject_id"),
    )
    op.create_index(
        "ix_export_recipients_subject",
        "export_recipients",
        ["subject_id", "export_id"],
        unique=False,
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("export_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("op", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("idempotency_key", sqlmodel.sql.sqltypes.AutoString(length=96), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("subject_ids", sa.Text(), nullable=True),
        sa.Column("created_at", cdp.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", cdp.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["export_id"], ["export_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    op.create_index(
        "ix_webhook_deliveries_status", "webhook_deliveries", ["status", "export_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_status", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_export_recipients_subject", table_name="export_recipients")
    op.drop_table("export_recipients")
    op.drop_table("export_schedules")
    op.drop_index("ix_export_runs_dest_segment", table_name="export_runs")
    op.drop_table("export_runs")
    op.drop_index("ix_export_sync_members_subject", table_name="export_sync_members")
    op.drop_table("export_sync_members")
    op.drop_index("ix_export_staging_action", table_name="export_staging")
    op.drop_table("export_staging")
    op.drop_table("export_destinations")
