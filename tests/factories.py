"""Plain factory functions for test data (no ORM magic, real keys and real tables)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa

from cdp.clock import utcnow
from cdp.crypto.normalize import IdentityKind
from cdp.db.models import Identity, Subject, new_subject_id
from cdp.profiles.pii_records import read_one, write_sealed
from cdp.runtime import Runtime


def make_subject(
    rt: Runtime,
    pii: Mapping[str, str] | None = None,
    identities: Mapping[IdentityKind, str] | None = None,
) -> str:
    """Create a subject with encrypted PII and identity tokens; return its id."""
    subject_id = new_subject_id()
    rt.vault.create_keys([subject_id])
    now = utcnow()
    with rt.data_engine.begin() as conn:
        conn.execute(sa.insert(Subject).values(id=subject_id, created_at=now, updated_at=now))
        sealed = rt.vault.encrypt_fields(subject_id, dict(pii or {}))
        write_sealed(conn, {subject_id: sealed}, existing=(), now=now)
        for kind, raw in (identities or {}).items():
            tok = rt.tokenizer.token(kind, raw)
            conn.execute(
                sa.insert(Identity).values(
                    subject_id=subject_id,
                    kind=tok.kind.value,
                    token=tok.value,
                    key_version=tok.key_version,
                    created_at=now,
                )
            )
    return subject_id


def read_pii(rt: Runtime, subject_id: str) -> dict[str, bytes]:
    """The raw ciphertexts of a subject, by field."""
    with rt.data_engine.connect() as conn:
        return read_one(conn, subject_id)


def checkpoint_sqlite(path: str) -> None:
    """Fold the WAL into the main SQLite file (so a file copy or scan sees every row)."""
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def in_thread(name: str, fn: Callable[[], Any], out: dict[str, Any]) -> threading.Thread:
    """Start ``fn`` in a thread named ``name``; its result, or the exception it raised, lands
    in ``out[name]`` for the test to look at."""

    def body() -> None:
        try:
            out[name] = fn()
        except Exception as exc:  # the test looks at it
            out[name] = exc

    thread = threading.Thread(target=body, name=name)
    thread.start()
    return thread
