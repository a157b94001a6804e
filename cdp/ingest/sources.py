"""Ingestion sources and their write keys.

A write key is 32 random bytes (URL-safe base64), shown once when the source is created and
stored only as its SHA-256 hex digest: the key has full entropy, so a fast hash is enough (a slow
password hash protects guessable secrets, which this is not). Authentication hashes the presented
key, looks the digest up through its unique index and compares in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from cdp.clock import Clock, utcnow
from cdp.db.conflicts import taken_name_is_conflict
from cdp.errors import AuthenticationError, ConflictError, InvalidInputError, NotFoundError
from cdp.ingest.models import Source
from cdp.runtime import Runtime

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_DUMMY = hashlib.sha256(b"cdp-no-such-key").hexdigest()


@dataclass(frozen=True)
class SourceInfo:
    """A source as listed (never the key)."""

    id: int
    name: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class NewSource:
    """A created source and its write key (shown once)."""

    info: SourceInfo
    write_key: str

    def __repr__(self) -> str:
        return f"NewSource(name={self.info.name!r})"


def key_digest(write_key: str) -> str:
    return hashlib.sha256(write_key.encode()).hexdigest()


def _table() -> sa.Table:
    return Source.__table__  # type: ignore[attr-defined,no-any-return]


def _info(row: Any) -> SourceInfo:
    return SourceInfo(id=row[0], name=row[1], created_at=row[2], revoked_at=row[3])


def create_source(
    *,
    runtime: Runtime,
    name: str,
    clock: Clock = utcnow,
    audit: Callable[[Connection, SourceInfo], object] | None = None,
) -> NewSource:
    """Create a source; return its write key (printed once, stored hashed). ``audit`` is
    called with the transaction and the new source before it commits (kept together or not
    at all)."""
    if not _NAME.match(name):
        raise InvalidInputError(
            "source name: letters, digits, '.', '_' or '-', at most 64", field="name"
        )
    t = _table()
    key = secrets.token_urlsafe(32)
    now = clock()
    with (
        taken_name_is_conflict(f"a source named {name!r} already exists"),
        runtime.data_engine.begin() as conn,
    ):
        if conn.execute(sa.select(t.c.id).where(t.c.name == name)).first() is not None:
            raise ConflictError(f"a source named {name!r} already exists")
        new_id = conn.execute(
            sa.insert(t)
            .values(name=name, write_key_hash=key_digest(key), created_at=now, revoked_at=None)
            .returning(t.c.id)
        ).scalar_one()
        info = SourceInfo(int(new_id), name, now, None)
        if audit is not None:
            audit(conn, info)
    return NewSource(info, key)


def list_sources(*, runtime: Runtime) -> list[SourceInfo]:
    t = _table()
    with runtime.data_engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.c.id, t.c.name, t.c.created_at, t.c.revoked_at).order_by(t.c.name)
        )
        return [_info(r) for r in rows]


def revoke_source(
    *,
    runtime: Runtime,
    name: str,
    clock: Clock = utcnow,
    audit: Callable[[Connection, SourceInfo], object] | None = None,
) -> SourceInfo:
    """Revoke a source's write key (requests with it get 401 from then on); ``audit`` as for
    :func:`create_source`."""
    t = _table()
    with runtime.data_engine.begin() as conn:
        row = conn.execute(
            sa.select(t.c.id, t.c.name, t.c.created_at, t.c.revoked_at).where(t.c.name == name)
        ).first()
        if row is None:
            raise NotFoundError(f"no source named {name!r}")
        revoked_at = row[3]
        if revoked_at is None:
            revoked_at = clock()
            conn.execute(sa.update(t).where(t.c.id == row[0]).values(revoked_at=revoked_at))
        info = SourceInfo(row[0], row[1], row[2], revoked_at)
        if audit is not None:
            audit(conn, info)
    return info


def authenticate_source(*, runtime: Runtime, write_key: str) -> SourceInfo:
    """The live source owning ``write_key``; :class:`AuthenticationError` otherwise."""
    digest = key_digest(write_key)
    t = _table()
    with runtime.data_engine.connect() as conn:
        row = conn.execute(
            sa.select(t.c.id, t.c.name, t.c.created_at, t.c.revoked_at, t.c.write_key_hash).where(
                t.c.write_key_hash == digest
            )
        ).first()
    stored = row[4] if row is not None else _DUMMY
    matches = hmac.compare_digest(stored.encode(), digest.encode())
    if row is None or not matches or row[3] is not None:
        error = AuthenticationError("unknown or revoked write key")
        error.challenge = 'Basic realm="cdp"'  # type: ignore[attr-defined]
        raise error
    return SourceInfo(row[0], row[1], row[2], row[3])
