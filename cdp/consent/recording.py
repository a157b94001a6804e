"""A grant or withdrawal made through a door (``POST /v1/consent``, ``cdp consent grant`` and
``withdraw``) by an authorised principal: the same steps whichever door it came through. A
subject id a merge absorbed reaches the survivor (:func:`cdp.consent.service.current_subject`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cdp.access.context import AccessContext
from cdp.audit.service import record_access
from cdp.consent import ledger_state, service
from cdp.consent.ledger_state import ConsentState
from cdp.runtime import Runtime


@dataclass(frozen=True, slots=True)
class RecordedChoice:
    """What recording a choice did."""

    subject_id: str
    """The subject the choice was recorded for: the id given, or the survivor that absorbed it
    in a merge."""
    recorded: bool
    """False when the same choice was already recorded (a replay)."""
    state: ConsentState
    """The purpose's current state after it."""


def record_choice(
    *,
    runtime: Runtime,
    ctx: AccessContext,
    subject_id: str,
    purpose: str,
    status: str,
    occurred_at: datetime,
    source: str,
    mechanism: str,
    notice_version: str | None = None,
) -> RecordedChoice:
    """Record the choice under ``ctx``'s principal and audit the write in one transaction (the
    choice and its audit record commit together, or neither does), and return the subject it
    was recorded for, whether it was new and the purpose's current state after it.

    A subject id that a merge absorbed reaches the subject that absorbed it (the same person);
    an id that was never stored, or was erased, raises :class:`NotFoundError`."""
    with runtime.data_engine.begin() as conn:
        held = service.current_subject(conn, subject_id)
        recorded = service.record_consent(
            conn=conn,
            subject_id=held,
            purpose=purpose,
            status=status,
            occurred_at=occurred_at,
            source=source,
            mechanism=mechanism,
            recorded_by=ctx.principal_name,
            notice_version=notice_version,
        )
        # in the same transaction: a choice the audit log cannot record is not kept either
        record_access(
            runtime=runtime,
            ctx=ctx,
            action="write",
            resource="data:consent",
            outcome="allowed",
            subject_ids=[held],
            fields=["consent"],
            conn=conn,
        )
    state = ledger_state.current_state(runtime=runtime, subject_id=held)[purpose]
    return RecordedChoice(subject_id=held, recorded=recorded, state=state)
