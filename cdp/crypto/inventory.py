"""What an installation already holds: data keys in the key store, subjects in the data database.

``cdp init``, and a process whose key file is missing or whose key store has no schema, ask this
before advising or doing anything that mints key material: new key material beside existing
data makes that data unreadable (new KEK: old data keys do not unwrap; new pseudonym key: every
identity gets a new token, so the same person is ingested again as someone new). Reads only;
never creates a database file.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import Engine

from cdp.crypto.keyfile import KeyFile
from cdp.db.engine import database_exists
from cdp.errors import KeyMaterialError

RECOVERY = "see 'Lost key file or key store' in docs/operations.md"


def _has_row(engine: Engine, table: str) -> bool | None:
    """Whether ``table`` has a row; None when the database or the table does not exist."""
    if not database_exists(engine):
        return None
    conn = engine.connect().execution_options(sqlite_begin="DEFERRED")
    with conn:
        if not sa.inspect(conn).has_table(table):
            return None
        return conn.execute(sa.text(f"SELECT 1 FROM {table} LIMIT 1")).first() is not None  # noqa: S608


def holds_data_keys(key_engine: Engine) -> bool:
    """Whether the key store holds any data key."""
    return bool(_has_row(key_engine, "data_keys"))


def holds_subjects(data_engine: Engine) -> bool:
    """Whether the data database holds any subject (a person's profile)."""
    return bool(_has_row(data_engine, "subjects"))


def refuse_new_keys_beside_data(key_file: KeyFile, data_engine: Engine, key_engine: Engine) -> None:
    """Refuse to mint key material, or an empty key store, beside data that needs the old ones.

    A new key file cannot read the data keys already in the key store (another KEK) and tokenises
    every identity anew (another pseudonym key: each person would be ingested again as someone
    new); an empty key store has none of the data keys that decrypt the data database's subjects.
    Both are what a lost or deleted file looks like, and the answer is to restore it. Asked by
    ``cdp init``, and by every process that finds the key store without a schema."""
    keys = holds_data_keys(key_engine)
    subjects = holds_subjects(data_engine)
    if not key_file.exists() and (keys or subjects):
        holder = "the key store holds data keys" if keys else "the data database holds subjects"
        raise KeyMaterialError(
            f"the key file {key_file.path} does not exist but {holder} that only it can read: "
            f"restore the key file from its backup (cdp init creates none beside data; {RECOVERY})"
        )
    if subjects and not keys:
        raise KeyMaterialError(
            "the key store holds no data keys but the data database holds subjects: restore the "
            f"key store from the backup taken with the data (cdp init creates no empty key store "
            f"beside data; {RECOVERY})"
        )
