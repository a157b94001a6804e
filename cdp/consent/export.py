"""Bulk export of the current consent state, one row per (subject, purpose), as CSV or JSON.

For the DPO and for tools that must mirror cdp's consent (an email service's suppression list, a
consent-management platform). Rows carry the subject id and the state's evidence (when, source,
mechanism, notice version) but no personal data. Subjects are read in batches by id, each batch's
ledger rows with one ``IN`` query, so memory stays flat however many subjects there are; the
caller writes an audit record per batch through ``on_batch`` (whose subjects' consent was read).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

import sqlalchemy as sa

from cdp.audit.chain import format_at
from cdp.consent.ledger_state import ConsentRecord, state_from
from cdp.consent.models import ConsentEvent
from cdp.consent.purposes import PURPOSE_NAMES, get_purpose
from cdp.db.models import Subject
from cdp.runtime import Runtime

COLUMNS = (
    "subject_id",
    "purpose",
    "status",
    "is_default",
    "occurred_at",
    "source",
    "mechanism",
    "notice_version",
)
BATCH = 1000


def iter_states(
    *,
    runtime: Runtime,
    purposes: Sequence[str] | None = None,
    on_batch: Callable[[list[str]], None] | None = None,
    batch_size: int = BATCH,
) -> Iterator[dict[str, Any]]:
    """The current state of every subject for ``purposes`` (default: all; each named once), by
    subject id. The purposes are checked now, before anything is read or written."""
    wanted = list(dict.fromkeys(purposes)) if purposes else list(PURPOSE_NAMES)
    for p in wanted:
        get_purpose(p)
    return _states(runtime, wanted, on_batch, batch_size)


def _states(
    runtime: Runtime,
    wanted: list[str],
    on_batch: Callable[[list[str]], None] | None,
    batch_size: int,
) -> Iterator[dict[str, Any]]:
    subjects = Subject.__table__  # type: ignore[attr-defined]
    ledger = ConsentEvent.__table__  # type: ignore[attr-defined]
    last = ""
    while True:
        with runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
            ids = list(
                conn.execute(
                    sa.select(subjects.c.id)
                    .where(subjects.c.id > last)
                    .order_by(subjects.c.id)
                    .limit(batch_size)
                ).scalars()
            )
            if not ids:
                return
            by_subject: dict[str, list[ConsentRecord]] = {i: [] for i in ids}
            for r in conn.execute(
                sa.select(ledger).where(ledger.c.subject_id.in_(ids), ledger.c.purpose.in_(wanted))
            ):
                by_subject[r.subject_id].append(
                    ConsentRecord(
                        r.id,
                        r.purpose,
                        r.status,
                        r.occurred_at,
                        r.recorded_at,
                        r.source,
                        r.notice_version,
                        r.mechanism,
                        r.recorded_by,
                    )
                )
        if on_batch is not None:
            on_batch(ids)
        for sid in ids:
            states = state_from(by_subject[sid])
            for p in wanted:
                s = states[p]
                yield {
                    "subject_id": sid,
                    "purpose": p,
                    "status": s.status,
                    "is_default": s.is_default,
                    "occurred_at": format_at(s.occurred_at) if s.occurred_at else None,
                    "source": s.source,
                    "mechanism": s.mechanism,
                    "notice_version": s.notice_version,
                }
        last = ids[-1]


def write_csv(stream: IO[str], rows: Iterator[dict[str, Any]]) -> int:
    """Write rows as CSV with a header; return how many rows."""
    writer = csv.DictWriter(stream, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    n = 0
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
        n += 1
    return n


def write_json(stream: IO[str], rows: Iterator[dict[str, Any]]) -> int:
    """Write rows as one JSON array, streamed element by element; return how many rows."""
    stream.write("[")
    n = 0
    for row in rows:
        stream.write(("," if n else "") + "\n" + json.dumps(row, ensure_ascii=False))
        n += 1
    stream.write("\n]\n")
    return n
