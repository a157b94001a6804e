"""A grant or withdrawal made through a door (``POST /v1/consent``, ``cdp consent grant`` and
``withdraw``) by an authorised principal: the same steps whichever door it came through."""

from __future__ import annotations

from datetime import datetime

from cdp.access.context import AccessContext
from cdp.audit.service import record_access
from cdp.consent import ledger_state, service
from cdp.consent.ledger_state import ConsentState
from cdp.runtime import Runtime


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
) -> tuple[bool, ConsentState]:
    """Record the choice under ``ctx``'s principal, audit the write, and return whether it was
    new (False for a replay) and the purpose's current state after it."""
    recorded = service.record_consent(
        runtime=runtime,
        subject_id=subject_id,
        purpose=purpose,
        status=status,
        occurred_at=occurred_at,
        source=source,
        mechanism=mechanism,
        recorded_by=ctx.principal_name,
        notice_version=notice_version,
    )
    record_access(
        runtime=runtime,
        ctx=ctx,
        action="write",
        resource="data:consent",
        outcome="allowed",
        subject_ids=[subject_id],
        fields=["consent"],
    )
    return recorded, ledger_state.current_state(runtime=runtime, subject_id=subject_id)[purpose]
