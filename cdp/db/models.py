"""Tables of the data database (the key store's tables live in :mod:`cdp.crypto.keystore_tables`).

No table here holds personal data in clear: subjects are random ids, identities are HMAC tokens,
PII values are AES-GCM ciphertexts under the subject's data key.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import Column, ForeignKey, Index, LargeBinary, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from cdp.clock import utcnow
from cdp.db.types import UtcDateTime


def new_subject_id() -> str:
    """A random subject id (128 bits, hex) that carries no personal data."""
    return secrets.token_hex(16)


class Subject(SQLModel, table=True):
    """One customer inside cdp."""

    __tablename__ = "subjects"

    id: str = Field(default_factory=new_subject_id, primary_key=True, max_length=32)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    signed_up_at: datetime | None = Field(
        default=None, sa_type=UtcDateTime, nullable=True, description="Account creation at source."
    )
    profile_as_of: datetime | None = Field(
        default=None,
        sa_type=UtcDateTime,
        nullable=True,
        description=(
            "Source time (the customer record's created_at) of the record whose PII values the "
            "profile holds: an older record does not overwrite them, so re-running files whose "
            "rows describe one person differently is stable."
        ),
    )


class Identity(SQLModel, table=True):
    """A pseudonymous way to recognise a subject: kind + keyed HMAC token of the value."""

    __tablename__ = "identities"
    __table_args__ = (
        UniqueConstraint("kind", "token", name="uq_identities_kind_token"),
        Index("ix_identities_subject", "subject_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    subject_id: str = Field(
        sa_column=Column(String(32), ForeignKey("subjects.id", ondelete="CASCADE"), nullable=False)
    )
    kind: str = Field(max_length=32)
    token: str = Field(max_length=64)
    key_version: int
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)


class PiiRecord(SQLModel, table=True):
    """A subject's encrypted personal-data fields, sealed together (:mod:`cdp.crypto.sealed_record`:
    one AES-GCM ciphertext a field, packed into one value)."""

    __tablename__ = "pii_records"

    subject_id: str = Field(
        sa_column=Column(
            String(32),
            ForeignKey("subjects.id", ondelete="CASCADE"),
            primary_key=True,
            nullable=False,
        )
    )
    fields: int = Field(nullable=False)
    """The fields present, as a bit set (``sealed_record.mask``): asked by SQL, never unpacked."""
    sealed: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)


class Tombstone(SQLModel, table=True):
    """An identity token of an erased subject: records that match it are refused."""

    __tablename__ = "tombstones"

    kind: str = Field(primary_key=True, max_length=32)
    token: str = Field(primary_key=True, max_length=64)
    key_version: int
    erased_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)


class RectifiedIdentity(SQLModel, table=True):
    """An identity token a rectification corrected away from a person (the value declared wrong).

    Like a tombstone it names no subject; records that carry it are refused (``rectified``), so a
    late record with the old value neither gives it back to the person nor starts a new person
    with default consent. A later rectification that sets the value (for anyone) removes it."""

    __tablename__ = "rectified_identities"

    kind: str = Field(primary_key=True, max_length=32)
    token: str = Field(primary_key=True, max_length=64)
    key_version: int
    rectified_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
