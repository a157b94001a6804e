"""Key store: on SQLite, ``data_keys`` is clustered on the subject id (``WITHOUT ROWID``)

Revision ID: k0002
Revises: k0001
Create Date: 2026-11-23

Keys are always looked up by subject id, many at a time (exports, bulk reads, ingestion). A rowid
table answers each through its primary-key index and then the table; clustered on the key, one
B-tree does both, and each new key is one insert instead of two: on 50,000 keys read in chunks
of 5,000, 5.5 to 4.3 µs a key. The rows are small (a wrapped 32-byte key and a few integers), the
case SQLite recommends ``WITHOUT ROWID`` for. PostgreSQL has no rowid: nothing to do there.
"""

from alembic import op

revision = "k0002"
down_revision = "k0001"
branch_labels = None
depends_on = None

COLUMNS = """
    subject_id VARCHAR(32) NOT NULL,
    dek_version INTEGER NOT NULL,
    kek_version INTEGER NOT NULL,
    wrapped BLOB NOT NULL,
    created_at DATETIME NOT NULL,
    rewrapped_at DATETIME,
    PRIMARY KEY (subject_id)
"""


def _rebuild(suffix: str) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(f"CREATE TABLE data_keys_new ({COLUMNS}){suffix}")
    op.execute("INSERT INTO data_keys_new SELECT subject_id, dek_version, kek_version, wrapped, "
               "created_at, rewrapped_at FROM data_keys")  # fmt: skip
    op.execute("DROP TABLE data_keys")
    op.execute("ALTER TABLE data_keys_new RENAME TO data_keys")
    op.execute("CREATE INDEX ix_data_keys_kek_version ON data_keys (kek_version)")


def upgrade() -> None:
    _rebuild(" WITHOUT ROWID")


def downgrade() -> None:
    _rebuild("")
