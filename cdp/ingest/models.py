"""Ingestion sources (write keys, stored hashed) and the messages already processed."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from cdp.clock import utcnow
from cdp.db.types import UtcDateTime


class Source(SQLModel, table=True):
    """A sender of events (a website, an app, a server) with its write key's hash."""

    __tablename__ = "sources"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True)
    write_key_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    revoked_at: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)


class SeenMessage(SQLModel, table=True):
    """A message id already processed (identify, alias… leave no other row to dedupe on)."""

    __tablename__ = "seen_messages"

    message_id: str = Field(primary_key=True, max_length=128)
    kind: str = Field(max_length=16)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
