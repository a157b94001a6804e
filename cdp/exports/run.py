"""The export pipeline: one segment to one destination, consent checked at send time.

Steps (each a short transaction, so SQLite's write lock is never held for the whole run):

1. authorise: the principal's roles may ``run`` ``exports`` for the destination's purpose
   (default deny; a denial is audited); write the export's audit record;
2. recompute membership and stage it in SQL with consent, restriction and data availability at
   this moment (the consent snapshot time), and the adds/removes against the sync state (the
   manifest records when the traits it read were computed);
3. refuse the adds, with the counts, when fewer eligible subjects remain than the destination's
   minimum (:mod:`cdp.exports.minimum`; the removes are still sent);
4. for adds, then removes, chunk by chunk: for adds, drop the subjects whose consent or
   restriction changed since staging (:mod:`cdp.exports.recheck`, before decrypting and again
   in the chunk's audit transaction); decrypt only the fields the destination may receive,
   write one audit record naming the chunk's subjects and fields (committed before any row is
   written out; a file export's recipients-ledger rows with it), build the rows (hashing for ad
   platforms) and hand them to the sink (file or signed webhook batches, each batch's ledger rows
   committed as its request starts: :mod:`cdp.exports.delivery`); the adds are refused after all
   if too few had usable data;
5. close: sync state, recipients ledger, counts and manifest in one transaction; the manifest
   is also written beside the output.

A failure at any point removes partial files, marks the run ``failed`` and clears its staging.
An export given a ``stop`` event (``cdp serve``'s scheduler) checks it before staging, before
each chunk and before each webhook batch (and instead of waiting to retry one): once it is set
the export stops there and fails with the error ``interrupted`` through the same path — the
ledger keeps what may have left cdp, a webhook's batches whose request had started, and nothing
of a file export.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from cdp.access.context import AccessContext
from cdp.access.engine import get_policy_engine
from cdp.audit.service import record_access, require
from cdp.clock import Clock, utcnow
from cdp.errors import (
    AudienceTooSmallError,
    CdpError,
    DestinationDisabledError,
    ExportInterruptedError,
    InvalidInputError,
)
from cdp.exports import staging, sync
from cdp.exports.audience import AudienceResolver, segment_audience
from cdp.exports.destination_changes import widened_since
from cdp.exports.destinations import DestinationInfo, get_destination
from cdp.exports.manifest import ExportCounts, Manifest
from cdp.exports.minimum import ERROR_CODE, REFUSED, REMOVES_ONLY, below_minimum, refusal
from cdp.exports.models import new_export_id
from cdp.exports.outputs import Outputs
from cdp.exports.pair_lock import pair_lock
from cdp.exports.recheck import LATE_CONSENT, Recheck, take_marks
from cdp.exports.records import RUNS, finish_run, start_run
from cdp.exports.recovery import recover_interrupted
from cdp.exports.rectified import settle
from cdp.exports.removes import RemovesDone, read_rectified, send_removes, unstaged
from cdp.exports.send import Progress, send_staged
from cdp.exports.webhook import RetryPolicy
from cdp.logging import get_logger
from cdp.observability import count_export
from cdp.privacy.erasure_lock import export_guard
from cdp.runtime import Runtime
from cdp.traits.freshness import traits_computed_at

log = get_logger("cdp.exports")

#: ``progress(phase, done, total)``; phases: ``add``, ``remove``.


@dataclass(frozen=True)
class ExportResult:
    """How an export ended: its id, status and manifest document."""

    export_id: str
    status: str
    counts: ExportCounts
    manifest: dict[str, Any]


def _check(ctx: AccessContext, dest: DestinationInfo) -> None:
    if not dest.enabled:
        raise DestinationDisabledError(dest.name)
    if ctx.purpose != dest.purpose:
        raise InvalidInputError(
            f"destination {dest.name!r} serves purpose {dest.purpose}; "
            f"run the export for that purpose (not {ctx.purpose})",
            field="purpose",
        )


def run_export(
    *,
    runtime: Runtime,
    ctx: AccessContext,
    segment: str,
    destination: str,
    full: bool = False,
    clock: Clock = utcnow,
    progress: Progress | None = None,
    retry: RetryPolicy | None = None,
    resolver: AudienceResolver = segment_audience,
    schedule_id: int | None = None,
    stop: threading.Event | None = None,
) -> ExportResult:
    """Export ``segment`` to ``destination`` as ``ctx``'s principal (see the module doc).

    Raises ``DestinationDisabledError`` (nothing stored), ``PermissionDeniedError`` (audited),
    ``InvalidInputError`` (purpose mismatch), ``NotFoundError``, or ``AudienceTooSmallError``
    carrying the counts and the export id when the audience is below the destination's
    minimum: no subject is added; the removes are sent all the same (the run is kept as
    ``removes_only``, or ``refused`` when there was nothing to remove; see
    :mod:`cdp.exports.minimum`), or ``ExportInterruptedError`` once ``stop`` is set (the run is
    closed as ``failed`` / ``interrupted``)."""
    dest = get_destination(runtime=runtime, name=destination)
    _check(ctx, dest)
    require(runtime=runtime, ctx=ctx, resource="exports", action="run", clock=clock)
    # an unknown segment is the caller's mistake, answered (404) before a run is stored; it was
    # stored and logged as a failed run
    from cdp.segments.service import get_segment

    get_segment(runtime=runtime, name=segment, clock=clock)
    recover_interrupted(runtime, clock=clock)  # close runs a dead process left (never waits)
    # no erasure commits while this export runs; no other export of this segment to this
    # destination runs beside it (refused at once: ExportRunningError)
    with export_guard(runtime), pair_lock(runtime, dest, segment):
        return _run(
            runtime, ctx, dest, segment, full, clock, progress, retry, resolver, schedule_id, stop
        )


def _run(
    runtime: Runtime,
    ctx: AccessContext,
    dest: DestinationInfo,
    segment: str,
    full: bool,
    clock: Clock,
    progress: Progress | None,
    retry: RetryPolicy | None,
    resolver: AudienceResolver,
    schedule_id: int | None,
    stop: threading.Event | None,
) -> ExportResult:
    export_id = new_export_id()
    ectx = replace(ctx, request_id=export_id)
    manifest = Manifest(
        export_id=export_id,
        status="running",
        segment=segment,
        rule_version=None,
        destination_id=dest.id,
        destination_name=dest.name,
        destination_kind=dest.kind,
        fields=dest.fields,
        purpose=dest.purpose,
        policy_version=get_policy_engine().policy_version,
        mode="full" if full else "incremental",
        consent_snapshot_at=None,
        principal_id=ctx.principal_id,
        principal_name=ctx.principal_name,
        roles=ctx.roles,
        request_id=ctx.request_id,
        started_at=clock(),
        finished_at=None,
        counts=ExportCounts(),
        minimum_audience=dest.min_audience,
    )
    start_run(runtime, manifest, schedule_id=schedule_id)
    record_access(
        runtime=runtime,
        ctx=ectx,
        action="run",
        resource="exports",
        outcome="allowed",
        fields=dest.fields,
        clock=clock,
    )
    outputs = Outputs(
        runtime=runtime, dest=dest, export_id=export_id, clock=clock, retry=retry, stop=stop
    )
    try:
        refused = _pipeline(runtime, ectx, dest, manifest, outputs, resolver, full, clock, progress)
    except BaseException as exc:
        unsent = outputs.unsent_ids()  # before abort: the webhook batches started stay recorded
        outputs.abort()
        _close(runtime, manifest, "failed", clock, error=_error_code(exc), unsent=unsent)
        if isinstance(exc, ExportInterruptedError):
            log.warning("export interrupted", export_id=export_id)
        else:
            log.error("export failed", export_id=export_id, error_type=type(exc).__name__)
        raise
    if refused is not None:
        raise refused
    return ExportResult(export_id, manifest.status, manifest.counts, manifest.to_document())


def _error_code(exc: BaseException) -> str:
    """The code stored on a failed run: a domain error's own, else a cdp code (never a
    library's: SQLAlchemy errors carry a ``code`` of their own, such as ``gkpj``)."""
    if isinstance(exc, CdpError):
        return exc.code[:64]
    if isinstance(exc, KeyboardInterrupt | SystemExit):
        return ExportInterruptedError.code
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout):
        return "database_unavailable"
    return "internal_error"


def _pipeline(
    runtime: Runtime,
    ctx: AccessContext,
    dest: DestinationInfo,
    manifest: Manifest,
    outputs: Outputs,
    resolver: AudienceResolver,
    full: bool,
    clock: Clock,
    progress: Progress | None,
) -> AudienceTooSmallError | None:
    """Run the export; return the refusal to raise once the run is closed, if any."""
    export_id = manifest.export_id
    outputs.raise_if_stopped()
    audience = resolver(runtime, manifest.segment, clock)
    manifest.rule_version = audience.rule_version
    with runtime.data_engine.begin() as conn:  # every entry staging cannot see lies above these
        recheck = Recheck(export_id=export_id, purpose=dest.purpose, marks=take_marks(conn))
    with runtime.data_engine.begin() as conn:
        manifest.consent_snapshot_at = clock()
        manifest.traits_computed_at = traits_computed_at(conn)
        staged = staging.stage(
            conn,
            export_id=export_id,
            members=audience.members,
            purpose=dest.purpose,
            fields=dest.fields,
            destination_id=dest.id,
            segment=manifest.segment,
            full=full,
        )
    counts = manifest.counts
    counts.members = staged.members
    counts.excluded_consent = staged.excluded_consent
    counts.excluded_restriction = staged.excluded_restriction
    counts.excluded_no_data = staged.no_data
    counts.unchanged = staged.unchanged
    left = staged.eligible
    if not below_minimum(dest, left):
        left = _adds(runtime, ctx, dest, outputs, staged, counts, progress, clock, recheck)
    refused = below_minimum(dest, left)
    found = read_rectified(runtime, ctx, dest)  # values rectified since the destination got them
    alone = unstaged(runtime, export_id, found)
    if refused:
        _refuse_adds(runtime, export_id, counts)
        if not staged.to_remove and not alone:  # nothing may leave: close, with no output
            outputs.abort()
            _close(runtime, manifest, REFUSED, clock, error=ERROR_CODE)
            return refusal(dest, counts, left, export_id=export_id, status=REFUSED)

    removes = RemovesDone(found)
    if staged.to_remove or alone:  # always sent: the minimum audience never holds them back
        removes = send_removes(
            runtime, ctx, dest, outputs, to_remove=staged.to_remove, found=found, alone=alone,
            counts=counts, progress=progress, clock=clock,
        )  # fmt: skip
        _mark(runtime, export_id, removes.lost, "lost")
        _mark(runtime, export_id, removes.failed, "failed")
    manifest.outputs = outputs.commit()
    if refused:
        status, error = REMOVES_ONLY, ERROR_CODE
    else:
        failed = counts.failed_delivery or counts.removes_failed
        status, error = ("partial" if failed else "succeeded"), None
    _close(runtime, manifest, status, clock, apply_sync=True, error=error, removes=removes)
    outputs.write_manifest(manifest.to_document())
    if refused:
        return refusal(dest, counts, left, export_id=export_id, status=REMOVES_ONLY)
    return None


def _adds(
    runtime: Runtime,
    ctx: AccessContext,
    dest: DestinationInfo,
    outputs: Outputs,
    staged: staging.StagedCounts,
    counts: ExportCounts,
    progress: Progress | None,
    clock: Clock,
    recheck: Recheck,
) -> int:
    """Send the adds; return the audience left once decrypted (eligible less the unusable and
    those found no longer eligible at send time). When that is below the minimum the adds file
    is dropped (a webhook held its rows back)."""
    export_id = ctx.request_id
    add_sink = outputs.sink("add", hold_until=dest.min_audience - staged.unchanged)
    skipped, failed, late = send_staged(
        runtime, ctx, dest, outputs, add_sink, "add", staged.to_add, progress, clock, recheck
    )
    counts.excluded_no_data += len(skipped)
    counts.failed_delivery = len(failed)
    counts.excluded_consent_late = sum(1 for s in late.values() if s == LATE_CONSENT)
    counts.excluded_restriction_late = len(late) - counts.excluded_consent_late
    counts.sent = staged.to_add - len(skipped) - len(failed) - len(late)
    _mark(runtime, export_id, skipped, "skip")
    _mark(runtime, export_id, failed, "failed")
    audience = staged.eligible - len(skipped) - len(late)
    if below_minimum(dest, audience):
        outputs.discard(add_sink)
    return audience


def _refuse_adds(runtime: Runtime, export_id: str, counts: ExportCounts) -> None:
    """No add leaves: the staged adds become ``refused`` and are counted as such."""
    with runtime.data_engine.begin() as conn:
        counts.adds_refused = staging.refuse_adds(conn, export_id=export_id)
    counts.sent = 0


def _mark(runtime: Runtime, export_id: str, ids: list[str], action: str) -> None:
    if ids:
        with runtime.data_engine.begin() as conn:
            staging.set_action(conn, export_id=export_id, subject_ids=ids, action=action)


def _close(
    runtime: Runtime,
    manifest: Manifest,
    status: str,
    clock: Clock,
    *,
    apply_sync: bool = False,
    error: str | None = None,
    unsent: list[str] | None = None,
    removes: RemovesDone | None = None,
) -> None:
    """Close the run in one transaction. Without ``apply_sync`` (refused or failed) the ledger
    keeps only what may have left cdp: nothing (``unsent`` None: the files were removed), or
    every subject but ``unsent`` (a webhook's: the batches whose request had started, the only
    ones it names); every subject it
    keeps enters the sync state as possibly held (:func:`cdp.exports.sync.hold_unconfirmed`),
    so the next run sends it again or withdraws it."""
    manifest.status = status
    manifest.finished_at = clock()
    with runtime.data_engine.begin() as conn:
        # first, as a change of the destination locks it: fields widened while this run sent
        # the old ones leave its adds unconfirmed (the next run sends them the new fields)
        widened = apply_sync and widened_since(
            conn, destination_id=manifest.destination_id, fields=manifest.fields
        )
        sync.lock_rows(conn, export_id=manifest.export_id)
        if apply_sync:
            c = manifest.counts
            sync.apply(
                conn,
                export_id=manifest.export_id,
                destination_id=manifest.destination_id,
                segment=manifest.segment,
                changed=c.sent + c.removed + c.removes_unresolvable,
                confirm_adds=not widened,
            )
            if removes is not None:  # the rectified values withdrawn leave, the others stay
                settle(
                    conn,
                    destination_id=manifest.destination_id,
                    read=removes.rectified,
                    failed=removes.failed + removes.failed_rectified,
                    staged_at=manifest.consent_snapshot_at,
                )
        else:
            sync.forget_recipients(conn, export_id=manifest.export_id, subject_ids=unsent)
            sync.hold_unconfirmed(
                conn,
                export_id=manifest.export_id,
                destination_id=manifest.destination_id,
                segment=manifest.segment,
            )
        finish_run(conn, manifest, error=error)
        staging.clear(conn, export_id=manifest.export_id)
    count_export(outcome=status, rows=manifest.counts.sent if apply_sync else 0)


__all__ = ["RUNS", "ExportResult", "Progress", "run_export"]
