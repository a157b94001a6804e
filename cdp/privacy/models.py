"""Tables of data-subject requests, restrictions, and the consent-ledger unlock.

A privacy request is kept after it is served (it is the evidence that the controller answered in
time), but it never holds personal data in clear: the subject link is a random id that erasure sets
to NULL, the identity it was made with is a token that erasure clears, and any payload (the
corrections of a rectification, a produced access package) is encrypted under the subject's data
key, so it dies with the key. The one exception is the corrections of a rectification filed before
the person was known (no subject to encrypt them for): they are encrypted under a data key of
their own, named by the request id (:func:`payload_owner`), which is shredded once the corrections
are applied, found to concern nobody, or the request is rejected.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import Column, ForeignKey, Index, LargeBinary, String, Text
from sqlmodel import Field, SQLModel

from cdp.clock import utcnow
from cdp.db.types import UtcDateTime


def new_request_id() -> str:
    """A random, non-guessable request id (it is shown to the requester)."""
    return "pr_" + secrets.token_hex(12)


def payload_field(request_id: str, kind: str) -> str:
    """The vault field (AAD) of a request's encrypted payload."""
    return f"privacy:{request_id}:{kind}"


def payload_owner(request_id: str, subject_id: str | None) -> str:
    """Whose data key a payload is encrypted under: its subject's, or (``subject_id`` NULL: the
    corrections of a rectification filed before the person was known) the request's own key,
    named by the request id."""
    return subject_id if subject_id is not None else request_id


class PrivacyRequest(SQLModel, table=True):
    """One data-subject request and where it stands in its lifecycle."""

    __tablename__ = "privacy_requests"
    __table_args__ = (Index("ix_privacy_requests_status_due", "status", "due_at"),)

    id: str = Field(default_factory=new_request_id, primary_key=True, max_length=32)
    type: str = Field(max_length=16, description="access | portability | erasure | ...")
    status: str = Field(max_length=16, description="received | verified | in_progress | ...")
    subject_id: str | None = Field(
        default=None,
        sa_column=Column(
            String(32), ForeignKey("subjects.id", ondelete="SET NULL"), nullable=True, index=True
        ),
    )
    identity_kind: str = Field(max_length=32)
    identity_token: str | None = Field(
        default=None, max_length=64, description="Token of the identity given; cleared on erasure."
    )
    received_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    due_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    extended_until: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)
    extension_reason: str | None = Field(default=None, max_length=256)
    verified_at: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)
    completed_at: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)
    requested_by: str = Field(max_length=64, description="principal that filed it")
    outcome: str | None = Field(
        default=None,
        sa_column=Column(Text, nullable=True),
        description="JSON summary of what was done (counts, destinations); no personal data.",
    )
    claim_token: str | None = Field(
        default=None,
        max_length=32,
        description="Set while a run holds the request (cdp.privacy.request_lifecycle.claim); "
        "cleared when the run ends, either way.",
    )
    claimed_at: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)


class PrivacyRequestEvent(SQLModel, table=True):
    """One step of a request's lifecycle (status change, extension, note), for the record."""

    __tablename__ = "privacy_request_events"

    id: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(
        sa_column=Column(
            String(32),
            ForeignKey("privacy_requests.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        )
    )
    at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    status: str = Field(max_length=16)
    actor: str = Field(max_length=64)
    note: str | None = Field(default=None, max_length=256, description="Never personal data.")


class PrivacyPayload(SQLModel, table=True):
    """Encrypted payload of a request: corrections to apply, or the produced access package."""

    __tablename__ = "privacy_payloads"

    request_id: str = Field(
        sa_column=Column(
            String(32),
            ForeignKey("privacy_requests.id", ondelete="CASCADE"),
            primary_key=True,
            nullable=False,
        )
    )
    kind: str = Field(primary_key=True, max_length=16, description="corrections | package")
    subject_id: str | None = Field(
        default=None,
        sa_column=Column(
            String(32), ForeignKey("subjects.id", ondelete="CASCADE"), nullable=True, index=True
        ),
        description="The subject whose key encrypts the payload; NULL: the request's own key "
        "(corrections filed before the person was known, see payload_owner).",
    )
    ciphertext: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(sa_type=UtcDateTime, nullable=False)


class Restriction(SQLModel, table=True):
    """A restriction of processing (GDPR art. 18): while open, only storage is allowed."""

    __tablename__ = "restrictions"

    id: int | None = Field(default=None, primary_key=True)
    subject_id: str = Field(
        sa_column=Column(
            String(32), ForeignKey("subjects.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    request_id: str | None = Field(default=None, max_length=32)
    started_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    lifted_at: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)


class LedgerUnlock(SQLModel, table=True):
    """Present only inside a transaction that may delete or move consent rows (erasure,
    retention, merges) on SQLite, which has no transaction-local settings; never committed."""

    __tablename__ = "ledger_unlocks"

    id: int | None = Field(default=None, primary_key=True)
    reason: str = Field(max_length=32)
    at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
