"""The recomputed trait tables lose their foreign key to subjects

Revision ID: 0006t
Revises: 0005t
Create Date: 2026-11-23

``subject_traits``, ``loyalty_status``, ``loyalty_tier_changes`` and ``clv_predictions`` are
rewritten wholesale by the trait recomputes; on PostgreSQL the per-row check of a foreign key
was the larger part of writing a million rows. Their consistency with ``subjects`` is kept by
the writing code instead (``cdp.traits.recompute_lock``). The downgrade puts the keys back
(and fails, as it should, if a row names no subject).
"""

import sqlalchemy as sa
from alembic import op

revision = "0006t"
down_revision = "0005t"
branch_labels = None
depends_on = None

TABLES = ("subject_traits", "loyalty_status", "loyalty_tier_changes", "clv_predictions")
# SQLite's keys are unnamed; batch mode names them by this convention to find them.
NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def _subject_fks(table: str) -> list[str]:
    inspector = sa.inspect(op.get_bind())
    return [
        fk.get("name") or f"fk_{table}_subject_id_subjects"
        for fk in inspector.get_foreign_keys(table)
        if fk["referred_table"] == "subjects"
    ]


def upgrade() -> None:
    for table in TABLES:
        names = _subject_fks(table)
        if not names:
            continue
        with op.batch_alter_table(table, naming_convention=NAMING) as batch_op:
            for name in names:
                batch_op.drop_constraint(name, type_="foreignkey")


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, naming_convention=NAMING) as batch_op:
            batch_op.create_foreign_key(
                f"fk_{table}_subject_id_subjects",
                "subjects",
                ["subject_id"],
                ["id"],
                ondelete="CASCADE",
            )
