"""Export runs as stored: start, finish, read back (``GET /v1/exports/{id}``, ``cdp export
show``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cdp.errors import NotFoundError
from cdp.exports.destinations import DESTINATIONS
from cdp.exports.manifest import Manifest
from cdp.exports.models import ExportRun, WebhookDelivery
from cdp.runtime import Runtime

RUNS = cast(sa.Table, ExportRun.__table__)  # type: ignore[attr-defined]
DELIVERIES = cast(sa.Table, WebhookDelivery.__table__)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class UndeliveredBatch:
    """A webhook batch of an export that was dead-lettered: which one, how many rows, how many
    tries and how the last one ended (an HTTP status, or an error name such as ``timeout``,
    ``ConnectError``, ``redirect_not_followed``, ``interrupted``). Never the rows or their ids."""

    seq: int
    op: str
    rows: int
    attempts: int
    last_status: int | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class ExportView:
    """An export as shown to its readers: status, counts, manifest (no personal data); a
    webhook export read by :func:`get_export` also lists its dead-lettered batches."""

    id: str
    status: str
    segment: str
    destination: str
    purpose: str
    principal_name: str
    started_at: datetime
    finished_at: datetime | None
    error_code: str | None
    manifest: dict[str, Any] | None
    undelivered: tuple[UndeliveredBatch, ...] = ()
    files_deleted_at: datetime | None = None
    """When retention deleted the files the run wrote (``CDP_EXPORT_FILE_DAYS`` after it)."""


def start_run(runtime: Runtime, manifest: Manifest, *, schedule_id: int | None) -> None:
    """Insert the run row in state ``running``."""
    with runtime.data_engine.begin() as conn:
        conn.execute(
            sa.insert(RUNS).values(
                id=manifest.export_id,
                status="running",
                segment=manifest.segment,
                destination_id=manifest.destination_id,
                purpose=manifest.purpose,
                principal_id=manifest.principal_id,
                principal_name=manifest.principal_name,
                request_id=manifest.request_id,
                policy_version=manifest.policy_version,
                full=manifest.mode == "full",
                schedule_id=schedule_id,
                started_at=manifest.started_at,
            )
        )


def finish_run(conn: Connection, manifest: Manifest, *, error: str | None) -> None:
    """Store the final status, counts and manifest of a run."""
    c = manifest.counts
    adds = [o for o in manifest.outputs if o.op == "add"]
    conn.execute(
        sa.update(RUNS)
        .where(RUNS.c.id == manifest.export_id)
        .values(
            status=manifest.status,
            rule_version=manifest.rule_version,
            consent_snapshot_at=manifest.consent_snapshot_at,
            finished_at=manifest.finished_at,
            members=c.members,
            # the run's columns count every exclusion; the manifest tells staging's from the
            # send-time check's (``*_late``)
            excluded_consent=c.excluded_consent + c.excluded_consent_late,
            excluded_restriction=c.excluded_restriction + c.excluded_restriction_late,
            skipped_no_data=c.excluded_no_data,
            unchanged=c.unchanged,
            sent=c.sent,
            removed=c.removed,
            failed_delivery=c.failed_delivery,
            output_sha256=manifest.output_sha256,
            output_path=adds[0].path if adds else None,
            error_code=error,
            manifest=json.dumps(manifest.to_document(), sort_keys=True),
        )
    )


def get_export(*, runtime: Runtime, export_id: str) -> ExportView:
    """The export ``export_id``; ``NotFoundError`` if there is none."""
    query = (
        sa.select(RUNS, DESTINATIONS.c.name.label("destination_name"))
        .select_from(RUNS.join(DESTINATIONS, DESTINATIONS.c.id == RUNS.c.destination_id))
        .where(RUNS.c.id == export_id)
    )
    with runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        row = conn.execute(query).first()
        if row is None:
            raise NotFoundError(f"no export {export_id!r}")
        undelivered = conn.execute(
            sa.select(
                DELIVERIES.c.seq,
                DELIVERIES.c.op,
                DELIVERIES.c.rows,
                DELIVERIES.c.attempts,
                DELIVERIES.c.last_status,
                DELIVERIES.c.last_error,
            )
            .where(DELIVERIES.c.export_id == export_id, DELIVERIES.c.status == "dead_letter")
            .order_by(DELIVERIES.c.op, DELIVERIES.c.seq)
        ).all()
    return replace(_view(row), undelivered=tuple(UndeliveredBatch(*u) for u in undelivered))


def list_exports(*, runtime: Runtime, limit: int = 50) -> list[ExportView]:
    """The latest exports, newest first."""
    query = (
        sa.select(RUNS, DESTINATIONS.c.name.label("destination_name"))
        .select_from(RUNS.join(DESTINATIONS, DESTINATIONS.c.id == RUNS.c.destination_id))
        .order_by(RUNS.c.started_at.desc())
        .limit(limit)
    )
    with runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        rows = conn.execute(query).all()
    return [_view(r) for r in rows]


def _view(row: Any) -> ExportView:
    m = row._mapping
    return ExportView(
        id=m["id"],
        status=m["status"],
        segment=m["segment"],
        destination=m["destination_name"],
        purpose=m["purpose"],
        principal_name=m["principal_name"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        error_code=m["error_code"],
        manifest=json.loads(m["manifest"]) if m["manifest"] else None,
        files_deleted_at=m["files_deleted_at"],
    )
