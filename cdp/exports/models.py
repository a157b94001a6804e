"""Tables of exports: destinations, runs (with their manifest), the per-run staging of members,
the recipients ledger, the incremental-sync state, webhook deliveries and schedules.

None of them holds personal data in clear. A webhook signing secret is stored wrapped under the
key-encryption key (see :mod:`cdp.exports.secrets`). Tables naming subjects (staging, recipients,
sync state) carry no foreign key to ``subjects``: erasure reads the recipients ledger first (to
notify destinations) and then deletes the rows itself through the privacy registry.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import Boolean, Column, ForeignKey, Index, Integer, LargeBinary, String, Text, true
from sqlmodel import Field, SQLModel

from cdp.clock import utcnow
from cdp.db.types import UtcDateTime


def new_export_id() -> str:
    """A random export id (``exp_`` + 96 bits hex)."""
    return "exp_" + secrets.token_hex(12)


DESTINATION_ID_PREFIX = "dst_"


def new_destination_id() -> str:
    """A random destination id (``dst_`` + 64 bits hex)."""
    return DESTINATION_ID_PREFIX + secrets.token_hex(8)


class Destination(SQLModel, table=True):
    """Where exports go, for which consent purpose, with which fields at most."""

    __tablename__ = "export_destinations"

    id: str = Field(default_factory=new_destination_id, primary_key=True, max_length=20)
    name: str = Field(max_length=64, unique=True)
    kind: str = Field(max_length=16, description="csv | jsonl | webhook | meta | google")
    purpose: str = Field(max_length=32, description="The consent purpose it serves.")
    fields: str = Field(max_length=256, description="Comma-separated profile fields allowed.")
    min_audience: int = Field(description="Refuse an export leaving fewer subjects than this.")
    url: str | None = Field(default=None, max_length=2048, description="Webhook URL.")
    secret_ct: bytes | None = Field(
        default=None,
        sa_column=Column(LargeBinary, nullable=True),
        description="Webhook signing secret, wrapped under the key-encryption key.",
    )
    secret_kek_version: int | None = Field(default=None)
    previous_secret_ct: bytes | None = Field(
        default=None,
        sa_column=Column(LargeBinary, nullable=True),
        description="The signing secret a rotation replaced, wrapped like the current one; it "
        "signs beside it until previous_secret_until.",
    )
    previous_secret_kek_version: int | None = Field(default=None)
    previous_secret_until: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)
    batch_size: int = Field(default=500, description="Rows per webhook batch.")
    max_attempts: int = Field(default=5, description="Webhook tries before a dead letter.")
    timeout_seconds: float = Field(
        default=10.0, description="Webhook: the most one try may take, in seconds."
    )
    enabled: bool = Field(default=True, sa_column=Column(Boolean, nullable=False))
    created_by: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)


class ExportRun(SQLModel, table=True):
    """One export: its state, counts and manifest (canonical JSON, also written beside output)."""

    __tablename__ = "export_runs"
    __table_args__ = (Index("ix_export_runs_dest_segment", "destination_id", "segment", "id"),)

    id: str = Field(default_factory=new_export_id, primary_key=True, max_length=32)
    status: str = Field(
        max_length=16,
        description="running | succeeded | partial | refused | removes_only | failed",
    )
    segment: str = Field(max_length=64)
    rule_version: int | None = Field(default=None)
    destination_id: str = Field(
        sa_column=Column(
            String(20), ForeignKey("export_destinations.id", ondelete="RESTRICT"), nullable=False
        )
    )
    purpose: str = Field(max_length=32)
    principal_id: str = Field(max_length=64)
    principal_name: str = Field(max_length=64)
    request_id: str = Field(max_length=64)
    policy_version: str = Field(max_length=64)
    full: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))
    schedule_id: int | None = Field(default=None)
    started_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    consent_snapshot_at: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)
    finished_at: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)
    members: int = Field(default=0)
    excluded_consent: int = Field(default=0)
    excluded_restriction: int = Field(default=0)
    skipped_no_data: int = Field(default=0)
    unchanged: int = Field(default=0)
    sent: int = Field(default=0)
    removed: int = Field(default=0)
    failed_delivery: int = Field(default=0)
    output_sha256: str | None = Field(default=None, max_length=64)
    output_path: str | None = Field(default=None, max_length=1024)
    error_code: str | None = Field(default=None, max_length=64)
    manifest: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    files_deleted_at: datetime | None = Field(
        default=None,
        sa_type=UtcDateTime,
        nullable=True,
        description="when retention deleted the files the run wrote (CDP_EXPORT_FILE_DAYS)",
    )


class ExportStaging(SQLModel, table=True):
    """The members of a running export and why each is in or out; emptied when it ends."""

    __tablename__ = "export_staging"
    # clustered on its key on SQLite (migration 0010); readers page by it, filtering the action
    __table_args__ = {"sqlite_with_rowid": False}

    export_id: str = Field(primary_key=True, max_length=32)
    subject_id: str = Field(primary_key=True, max_length=32)
    state: str = Field(
        max_length=16, description="no_consent | restricted | no_data | eligible | left"
    )
    action: str = Field(
        default="none",
        max_length=8,
        description="none | add | keep | remove | skip | failed | lost | refused",
    )


class ExportRecipient(SQLModel, table=True):
    """The recipients ledger: this subject's data went (``add``) or was withdrawn (``remove``) to
    this destination in this export."""

    __tablename__ = "export_recipients"
    __table_args__ = (
        Index("ix_export_recipients_subject", "subject_id", "export_id"),
        {"sqlite_with_rowid": False},  # clustered on its key (migration 0010)
    )

    export_id: str = Field(
        sa_column=Column(
            String(32),
            ForeignKey("export_runs.id", ondelete="CASCADE"),
            primary_key=True,
            nullable=False,
        )
    )
    subject_id: str = Field(primary_key=True, max_length=32)
    destination_id: str = Field(max_length=20)
    op: str = Field(max_length=8, description="add | remove")
    fields: str = Field(max_length=256, description="Comma-separated fields sent.")
    at: datetime = Field(sa_type=UtcDateTime, nullable=False)


class SyncMember(SQLModel, table=True):
    """Incremental sync state: the subjects the destination holds, or may hold (``confirmed``
    false), for this segment (see :mod:`cdp.exports.sync`)."""

    __tablename__ = "export_sync_members"
    __table_args__ = (
        Index("ix_export_sync_members_subject", "subject_id"),
        {"sqlite_with_rowid": False},  # clustered on its key (migration 0010)
    )

    destination_id: str = Field(primary_key=True, max_length=20)
    segment: str = Field(primary_key=True, max_length=64)
    subject_id: str = Field(primary_key=True, max_length=32)
    export_id: str = Field(max_length=32, description="The export that sent it.")
    confirmed: bool = Field(
        default=True,
        sa_column=Column(Boolean, nullable=False, server_default=true()),
        description="False: a dead-lettered batch or a failed run may have left it there, or "
        "the destination's fields were widened since it was sent; the next run sends it again "
        "while eligible, a remove once not.",
    )


class WebhookDelivery(SQLModel, table=True):
    """One webhook batch: delivered, or a dead letter after its last try."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_status", "status", "export_id"),)

    id: int | None = Field(default=None, primary_key=True)
    export_id: str = Field(
        sa_column=Column(
            String(32), ForeignKey("export_runs.id", ondelete="CASCADE"), nullable=False
        )
    )
    seq: int
    op: str = Field(max_length=8)
    idempotency_key: str = Field(max_length=96, unique=True)
    status: str = Field(max_length=16, description="delivered | dead_letter")
    attempts: int
    rows: int
    last_status: int | None = Field(default=None)
    last_error: str | None = Field(default=None, max_length=128)
    subject_ids: str | None = Field(
        default=None,
        sa_column=Column(Text, nullable=True),
        description="JSON list, kept for dead letters only (never the payload: it holds PII).",
    )
    created_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    finished_at: datetime = Field(sa_type=UtcDateTime, nullable=False)


class ExportSchedule(SQLModel, table=True):
    """A configured export that ``cdp serve`` runs every ``every_seconds``."""

    __tablename__ = "export_schedules"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True)
    segment: str = Field(max_length=64)
    destination_id: str = Field(
        sa_column=Column(
            String(20), ForeignKey("export_destinations.id", ondelete="CASCADE"), nullable=False
        )
    )
    principal_name: str = Field(max_length=64, description="The principal the export runs as.")
    every_seconds: int = Field(sa_column=Column(Integer, nullable=False))
    next_run_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    last_run_at: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)
    last_export_id: str | None = Field(default=None, max_length=32)
    last_status: str | None = Field(default=None, max_length=32)
    enabled: bool = Field(default=True, sa_column=Column(Boolean, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)


class RectifiedValue(SQLModel, table=True):
    """A rectified field of a subject that a destination holds, pending its next export
    (:mod:`cdp.exports.rectified`): the value it replaced, sealed under the subject's data key,
    where the destination matches removes on the field (email, phone), so that export can
    withdraw it; none for the other fields (the export re-sends them)."""

    __tablename__ = "export_rectified_values"
    __table_args__ = (Index("ix_export_rectified_values_subject", "subject_id"),)

    destination_id: str = Field(
        sa_column=Column(
            String(20),
            ForeignKey("export_destinations.id", ondelete="CASCADE"),
            primary_key=True,
            nullable=False,
        )
    )
    subject_id: str = Field(primary_key=True, max_length=32)
    field: str = Field(primary_key=True, max_length=32)
    ciphertext: bytes | None = Field(
        default=None,
        sa_column=Column(LargeBinary, nullable=True),
        description="The replaced value, sealed (vault field rectified:<destination id>:<field>); "
        "NULL for a field removes do not match on, or none stored before.",
    )
    rectified_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
