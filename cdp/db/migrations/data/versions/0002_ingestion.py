"""ingestion: orders, items, events, consent ledger, sources, merges

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 01:19:02.542410
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import cdp.db.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "seen_messages",
        sa.Column("message_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("received_at", cdp.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("message_id"),
    )
    op.create_table(
        "sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("write_key_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", cdp.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", cdp.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("write_key_hash"),
    )
    op.create_table(
        "consent_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject_id", sa.String(length=32), nullable=False),
        sa.Column("purpose", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("occurred_at", cdp.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", cdp.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("notice_version", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("mechanism", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("recorded_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("dedupe_key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.ForeignKeyConstraint(["subject_id"], ["subjects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key"),
    )
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_consent_subject_purpose_time",
            ["subject_id", "purpose", "occurred_at"],
            unique=False,
        )

    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("subject_id", sa.String(length=32), nullable=False),
        sa.Column("type", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("properties_ct", sa.LargeBinary(), nullable=True),
        sa.Column("occurred_at", cdp.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("received_at", cdp.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.ForeignKeyConstraint(["subject_id"], ["subjects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_id"),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_events_name"), ["name"], unique=False)
        batch_op.create_index("ix_events_subject_time", ["subject_id", "occurred_at"], unique=False)

    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_ref", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("subject_id", sa.String(length=32), nullable=True),
        sa.Column("ordered_at", cdp.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("discount_minor", sa.BigInteger(), nullable=False),
        sa.Column("value_base", sa.Float(), nullable=False),
        sa.Column("coupon", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", cdp.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", cdp.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["subject_id"], ["subjects.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("order_ref"),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_orders_ordered_at"), ["ordered_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_orders_subject_id"), ["subject_id"], unique=False)
        batch_op.create_index(
            "ix_orders_subject_time_value", ["subject_id", "ordered_at", "value_base"], unique=False
        )

    op.create_table(
        "subject_merges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("survivor_id", sa.String(length=32), nullable=False),
        sa.Column("merged_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("linked_by", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("merged_at", cdp.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["survivor_id"], ["subjects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("subject_merges", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_subject_merges_merged_id"), ["merged_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_subject_merges_survivor_id"), ["survivor_id"], unique=False
        )

    op.create_table(
        "order_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("product_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("sku", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("category", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=True),
        sa.Column("price_minor", sa.BigInteger(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("order_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_order_items_category"), ["category"], unique=False)
        batch_op.create_index(batch_op.f("ix_order_items_order_id"), ["order_id"], unique=False)

    with op.batch_alter_table("subjects", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("signed_up_at", cdp.db.types.UtcDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("subjects", schema=None) as batch_op:
        batch_op.drop_column("signed_up_at")

    with op.batch_alter_table("order_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_order_items_order_id"))
        batch_op.drop_index(batch_op.f("ix_order_items_category"))

    op.drop_table("order_items")
    with op.batch_alter_table("subject_merges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subject_merges_survivor_id"))
        batch_op.drop_index(batch_op.f("ix_subject_merges_merged_id"))

    op.drop_table("subject_merges")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_subject_time_value")
        batch_op.drop_index(batch_op.f("ix_orders_subject_id"))
        batch_op.drop_index(batch_op.f("ix_orders_ordered_at"))

    op.drop_table("orders")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_subject_time")
        batch_op.drop_index(batch_op.f("ix_events_name"))

    op.drop_table("events")
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.drop_index("ix_consent_subject_purpose_time")

    op.drop_table("consent_events")
    op.drop_table("sources")
    op.drop_table("seen_messages")
