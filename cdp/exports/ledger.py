"""Reading the recipients ledger: who received a person's data.

:func:`recipients_of` feeds the subject access report ("who received my data": every export that
included the person, to which destination, which fields, when) and erasure notices (the
destinations that must be told). It reads by the ``(subject_id, export_id)`` index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cdp.audit.reports import Recipient as Disclosure
from cdp.exports.destinations import DESTINATIONS
from cdp.exports.models import ExportRun
from cdp.exports.sync import RECIPIENTS
from cdp.runtime import Runtime

RUNS = cast(sa.Table, ExportRun.__table__)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Recipient:
    """One export that sent (``add``) or withdrew (``remove``) a subject's data."""

    export_id: str
    destination_id: str
    destination_name: str
    destination_kind: str
    purpose: str
    segment: str
    op: str
    fields: tuple[str, ...]
    at: datetime


_QUERY = (
    sa.select(
        RECIPIENTS.c.export_id,
        RECIPIENTS.c.destination_id,
        DESTINATIONS.c.name,
        DESTINATIONS.c.kind,
        RUNS.c.purpose,
        RUNS.c.segment,
        RECIPIENTS.c.op,
        RECIPIENTS.c.fields,
        RECIPIENTS.c.at,
    )
    .select_from(
        RECIPIENTS.join(RUNS, RUNS.c.id == RECIPIENTS.c.export_id).join(
            DESTINATIONS, DESTINATIONS.c.id == RECIPIENTS.c.destination_id
        )
    )
    .where(RECIPIENTS.c.subject_id.in_(sa.bindparam("sids", expanding=True)))
    .order_by(RECIPIENTS.c.at, RECIPIENTS.c.export_id)
)


def recipients_of(
    subject_id: str,
    *,
    runtime: Runtime | None = None,
    conn: Connection | None = None,
    former: Sequence[str] = (),
) -> list[Recipient]:
    """Every export that included ``subject_id`` or one of its ``former`` ids (those it absorbed
    in merges), oldest first (pass ``runtime`` or ``conn``)."""
    params = {"sids": [subject_id, *former]}
    if conn is not None:
        rows = conn.execute(_QUERY, params).all()
    elif runtime is not None:
        with runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as own:
            rows = own.execute(_QUERY, params).all()
    else:
        raise TypeError("pass runtime= or conn=")
    return [
        Recipient(
            export_id=r[0],
            destination_id=r[1],
            destination_name=r[2],
            destination_kind=r[3],
            purpose=r[4],
            segment=r[5],
            op=r[6],
            fields=tuple(f for f in r[7].split(",") if f),
            at=r[8],
        )
        for r in rows
    ]


def destinations_of(
    subject_id: str, *, runtime: Runtime | None = None, conn: Connection | None = None
) -> list[str]:
    """The names of the destinations that hold or held the subject's data (erasure notices)."""
    names = [r.destination_name for r in recipients_of(subject_id, runtime=runtime, conn=conn)]
    return list(dict.fromkeys(names))


def disclosures(
    runtime: Runtime, subject_ids: Sequence[str], since: datetime, until: datetime
) -> list[Disclosure]:
    """The exports between ``since`` and ``until`` that included the person under any of
    ``subject_ids`` (the subject first, then the ids it absorbed), as the subject access report
    lists them under "who received this data": one line per export, ``add`` if any of the ids
    was added (as a merge keeps it)."""
    sid, *former = subject_ids
    per_export: dict[str, Recipient] = {}
    for r in recipients_of(sid, runtime=runtime, former=former):
        if not since <= r.at <= until:
            continue
        seen = per_export.get(r.export_id)
        if seen is None or (seen.op != "add" and r.op == "add"):
            per_export[r.export_id] = r
    return [
        Disclosure(
            at=r.at,
            recipient=f"{r.destination_name} ({r.destination_kind})",
            purpose=r.purpose,
            fields=r.fields,
            reference=r.export_id if r.op == "add" else f"{r.export_id} (removed)",
        )
        for r in sorted(per_export.values(), key=lambda r: (r.at, r.export_id))
    ]
