"""Consent records: appended to the consent ledger, idempotent by a dedupe key.

The dedupe key hashes the record's strongest identity token (not the subject id, which a merge
can change), purpose, status, time and source, so a replayed file adds nothing, before or after
a merge.

Change-only mode (the Segment API: every message repeats the visitor's preferences, and a
``Sec-GPC: 1`` header comes with every request) records an entry when it changes the subject's
current state for the purpose, and also a *repetition* of the current state dated on a later
UTC day than the latest entry (:func:`change_only_records`): the ledger then holds the person's
latest expressed choice with its date, so an older opposite entry arriving late (a re-imported
file) cannot override it; at most one repetition per (subject, purpose, day) bounds the rows a
busy visitor adds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from cdp.consent.ledger_state import precedence
from cdp.consent.models import ConsentEvent
from cdp.consent.service import ledger_time
from cdp.ingest.batch import BatchContext, Outcome, claim_of, existing, refusal
from cdp.ingest.bulk import insert_rows
from cdp.ingest.records import ConsentRecord
from cdp.profiles.resolve import resolve


def dedupe_key(ctx: BatchContext, claim_kind: str, normalized: str, r: ConsentRecord) -> str:
    """Hash of (identity token, purpose, status, occurred_at, source)."""
    from cdp.crypto.normalize import IdentityKind

    token = ctx.runtime.tokenizer.token_of_normalized(IdentityKind(claim_kind), normalized).value
    text = "|".join((token, r.purpose, r.status, r.occurred_at.isoformat(), r.source))
    return hashlib.sha256(text.encode()).hexdigest()


def consent_rows(
    ctx: BatchContext, items: Sequence[tuple[int, ConsentRecord]]
) -> tuple[list[tuple[int, ConsentRecord, str]], int]:
    """(position, record, dedupe key) of the records not yet in the ledger; duplicates counted."""
    keyed = []
    for position, r in items:
        claim = claim_of(
            customer_id=r.customer_id, email=r.email, phone=r.phone, anonymous_id=r.anonymous_id
        )
        kind, normalized = claim[0]
        keyed.append((position, r, dedupe_key(ctx, kind.value, normalized, r)))
    ct = ConsentEvent.__table__  # type: ignore[attr-defined]
    stored = existing(ctx.conn, ct.c.dedupe_key, (k for _, _, k in keyed))
    fresh, seen, dupes = [], set(), 0
    for position, r, key in keyed:
        if key in stored or key in seen:
            dupes += 1
            continue
        seen.add(key)
        fresh.append((position, r, key))
    return fresh, dupes


Latest = tuple[tuple[datetime, bool, int], str]
"""The entry that is a (subject, purpose)'s current state: its precedence key and status."""

PENDING = 2**62
"""Precedence ids of the entries of the batch being written: after every stored entry."""


def current_states(ctx: BatchContext, subject_ids: Sequence[str]) -> dict[tuple[str, str], Latest]:
    """(subject, purpose) -> the entry that is its current state, by the consent service's rule
    (the latest ``occurred_at``; a withdrawal wins a tie)."""
    ct = ConsentEvent.__table__  # type: ignore[attr-defined]
    ids = sorted(set(subject_ids))
    state: dict[tuple[str, str], Latest] = {}
    for start in range(0, len(ids), 5_000):
        for sid, purpose, status, at, entry_id in ctx.conn.execute(
            sa.select(ct.c.subject_id, ct.c.purpose, ct.c.status, ct.c.occurred_at, ct.c.id).where(
                ct.c.subject_id.in_(ids[start : start + 5_000])
            )
        ):
            rank = precedence(at, status, entry_id)
            if (sid, purpose) not in state or rank > state[(sid, purpose)][0]:
                state[(sid, purpose)] = (rank, status)
    return state


def change_only_records(latest: Latest | None, status: str, at: datetime) -> bool:
    """Whether change-only mode records an entry of ``status`` dated ``at`` (its ledger time),
    given the current state's entry ``latest``.

    A change of state, or the first choice, is recorded. So is a repetition of the current state
    dated on a later UTC day than the latest entry: the person's latest expressed choice is then
    on the ledger with its date, and an older opposite entry that arrives afterwards (a
    re-imported file) does not become the latest. Other repetitions (the same day, or older) are
    skipped: at most one per (subject, purpose, day), however many messages repeat it. Within
    that day an older opposite entry dated between the two can still win, until the person's
    next message records their choice again as a change."""
    if latest is None or latest[1] != status:
        return True
    return at.astimezone(UTC).date() > latest[0][0].astimezone(UTC).date()


def write_consents(
    ctx: BatchContext,
    items: Sequence[tuple[int, ConsentRecord]],
    *,
    only_changes: bool = False,
) -> Outcome:
    """Ingest one batch of consent records in ``ctx.conn``'s transaction.

    ``only_changes`` (the Segment API, where every message repeats the visitor's preferences)
    records an entry only when it changes the subject's current state for the purpose, or
    repeats it on a later day than the latest entry (:func:`change_only_records`).
    """
    out = Outcome()
    fresh, out.duplicates = consent_rows(ctx, items)
    if not fresh:
        return out
    res = out.resolved(
        resolve(
            runtime=ctx.runtime,
            conn=ctx.conn,
            claims=[
                claim_of(
                    customer_id=r.customer_id,
                    email=r.email,
                    phone=r.phone,
                    anonymous_id=r.anonymous_id,
                )
                for _, r, _ in fresh
            ],
            now=ctx.now,
            keyless=ctx.keyless,
        )
    )
    rows: list[dict[str, Any]] = []
    state: dict[tuple[str, str], Latest] = {}
    if only_changes:
        state = current_states(ctx, [s for s in res.subjects if s is not None])
    for i, (position, r, key) in enumerate(fresh):
        sid = res.subjects[i]
        if sid is None:
            out.rejects.append(refusal(position, res.refused[i]))
            continue
        at = ledger_time(r.occurred_at, ctx.now)
        if only_changes:
            latest = state.get((sid, r.purpose))
            if not change_only_records(latest, r.status, at):
                out.duplicates += 1
                continue
            rank = precedence(at, r.status, PENDING + i)
            if latest is None or rank > latest[0]:
                state[(sid, r.purpose)] = (rank, r.status)
        rows.append(
            {
                "subject_id": sid,
                "purpose": r.purpose,
                "status": r.status,
                "occurred_at": at,
                "recorded_at": ctx.now,
                "source": r.source,
                "notice_version": r.notice_version,
                "mechanism": r.mechanism,
                "recorded_by": ctx.recorded_by[:64],
                "dedupe_key": key,
            }
        )
    if rows:
        insert_rows(ctx.conn, ConsentEvent.__table__, rows)  # type: ignore[attr-defined]
        out.inserted = len(rows)
    return out
