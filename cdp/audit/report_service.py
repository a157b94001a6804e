"""Producing a compliance report for a principal: check, build, record, render.

Reading the audit trail is itself recorded: each report adds an ``allowed`` record (action
``report:<kind>``, resource ``audit_reports``, the subject for a subject access report) before
the report is returned; if that record cannot be written, no report is returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cdp.access.context import AccessContext
from cdp.access.principals import valid_name
from cdp.audit import activity_reports, anomaly_report, processing_report, reports
from cdp.audit.render import FORMATS, render
from cdp.audit.service import record_access
from cdp.audit.writer import SUBJECT_ID
from cdp.clock import Clock, utcnow
from cdp.errors import InvalidInputError
from cdp.runtime import Runtime


@dataclass(frozen=True, slots=True)
class RenderedReport:
    """A rendered report and its media type."""

    kind: str
    fmt: str
    media_type: str
    body: str


def build_report(
    *,
    runtime: Runtime,
    kind: str,
    subject_id: str | None = None,
    principal: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    clock: Clock = utcnow,
) -> reports.Report:
    """The report of ``kind`` (one of :data:`cdp.audit.reports.KINDS`) with its parameters."""
    if kind == "subject-access":
        if subject_id is None or not SUBJECT_ID.match(subject_id):
            raise InvalidInputError("a subject access report needs a subject id", field="subject")
        return activity_reports.subject_access(
            runtime=runtime, subject_id=subject_id, since=since, until=until, clock=clock
        )
    if kind == "principal-activity":
        if not principal:
            raise InvalidInputError(
                "a principal activity report needs a principal", field="principal"
            )
        if not valid_name(principal):  # it is printed in the report (Markdown has no escape)
            raise InvalidInputError(
                "a principal name is 1-64 letters, digits, '_', '.', '@' or '-'",
                field="principal",
            )
        return activity_reports.principal_activity(
            runtime=runtime, principal=principal, since=since, until=until, clock=clock
        )
    if kind == "denied-anomalies":
        return anomaly_report.denied_anomalies(
            runtime=runtime, since=since, until=until, clock=clock
        )
    if kind == "processing":
        reports.window(since, until, clock)  # no period, but one given is checked like any other
        return processing_report.processing(runtime=runtime, clock=clock)
    raise InvalidInputError(f"report kind must be one of {', '.join(reports.KINDS)}", field="kind")


def produce_report(
    *,
    runtime: Runtime,
    ctx: AccessContext,
    kind: str,
    fmt: str = "md",
    subject_id: str | None = None,
    principal: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    clock: Clock = utcnow,
) -> RenderedReport:
    """Build, record and render a report for ``ctx`` (already authorised for audit reports)."""
    if fmt not in FORMATS:
        raise InvalidInputError(f"format must be one of {', '.join(FORMATS)}", field="format")
    report = build_report(
        runtime=runtime,
        kind=kind,
        subject_id=subject_id,
        principal=principal,
        since=since,
        until=until,
        clock=clock,
    )
    body = render(report, fmt)
    record_access(
        runtime=runtime,
        ctx=ctx,
        action=f"report:{kind}",
        resource="audit_reports",
        outcome="allowed",
        subject_ids=[subject_id] if subject_id else [],
        fields=["audit_log"],
        clock=clock,
    )
    return RenderedReport(kind=kind, fmt=fmt, media_type=FORMATS[fmt], body=body)
