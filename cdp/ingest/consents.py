"""Consent records: appended to the consent ledger, idempotent by a dedupe key.

The dedupe key hashes the record's strongest identity token (not the subject id, which a merge
can change), purpose, status, time and source, so a replayed file adds nothing, before or after
a merge.

A record that names an erased identity (a tombstoned token, or a subject whose data key is gone)
is refused as ``erased`` — unless it is a withdrawal and its other identities name live subjects:
the withdrawal is then recorded for each of them (a GPC signal, or a banner's "no", sent with an
erased shop account's ``userId`` and a live device's ``anonymousId``, still reaches the device's
subject), and nothing else is done with the record: the erased person is linked to no one, nothing
is created, and a grant is never recorded through such a record. Counts are per ledger entry
(``inserted``, ``duplicates``); ``Outcome.erased_named`` counts those records.

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
from cdp.consent.purposes import ConsentStatus
from cdp.consent.service import ledger_time
from cdp.ingest.batch import BatchContext, Outcome, claim_of, existing, refusal
from cdp.ingest.bulk import insert_rows
from cdp.ingest.records import ConsentRecord
from cdp.profiles.resolve import Claim, Resolution, resolve


def dedupe_key(ctx: BatchContext, claim_kind: str, normalized: str, r: ConsentRecord) -> str:
    """Hash of (identity token, purpose, status, occurred_at, source); for a choice taken from
    an event message, the message's key in place of the time (:meth:`ConsentRecord.from_message`:
    the same message replayed later is the same entry)."""
    from cdp.crypto.normalize import IdentityKind

    token = ctx.runtime.tokenizer.token_of_normalized(IdentityKind(claim_kind), normalized).value
    moment = f"message:{r.message_key}" if r.message_key else r.occurred_at.isoformat()
    text = "|".join((token, r.purpose, r.status, moment, r.source))
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


Entry = tuple[int, int, ConsentRecord, str, str]
"""One ledger entry to write: (index in the batch, position, record, subject id, dedupe key)."""


def _entries(
    ctx: BatchContext,
    fresh: Sequence[tuple[int, ConsentRecord, str]],
    claims: Sequence[Claim],
    res: Resolution,
    out: Outcome,
) -> list[Entry]:
    """The entries the batch's records imply, in record order; refusals go to ``out``.

    A record resolved to a subject is one entry under its own dedupe key. A record naming an
    erased identity is refused (``erased``), unless it is a withdrawal and its other identities
    name live subjects: then it is one withdrawal per such subject (the erased person is not
    linked to them, nothing is created), each keyed as if the record had named only the identity
    that names that subject, so a replay, or the same withdrawal sent without the erased
    identity, adds nothing. Such a record is counted in ``out.erased_named``."""
    entries: list[Entry] = []
    extra: list[Entry] = []
    for i, (position, r, key) in enumerate(fresh):
        sid = res.subjects[i]
        if sid is not None:
            entries.append((i, position, r, sid, key))
            continue
        holders = res.live_holders.get(i) if r.status == ConsentStatus.WITHDRAWN.value else None
        if not holders:
            out.rejects.append(refusal(position, res.refused[i]))
            continue
        out.erased_named += 1
        for holder, at in holders:
            kind, normalized = claims[i][at]
            extra.append((i, position, r, holder, dedupe_key(ctx, kind.value, normalized, r)))
    if not extra:
        return entries
    ct = ConsentEvent.__table__  # type: ignore[attr-defined]
    stored = existing(ctx.conn, ct.c.dedupe_key, (e[4] for e in extra))
    seen = {e[4] for e in entries}
    for entry in extra:
        if entry[4] in stored or entry[4] in seen:
            out.duplicates += 1
            continue
        seen.add(entry[4])
        entries.append(entry)
    entries.sort(key=lambda e: e[0])
    return entries


def write_consents(
    ctx: BatchContext,
    items: Sequence[tuple[int, ConsentRecord]],
    *,
    only_changes: bool = False,
) -> Outcome:
    """Ingest one batch of consent records in ``ctx.conn``'s transaction.

    ``only_changes`` (the Segment API, where every message repeats the visitor's preferences)
    records an entry only when it changes the subject's current state for the purpose, or
    repeats it on a later day than the latest entry (:func:`change_only_records`). A record
    naming an erased identity records a withdrawal only, for the live subjects its other
    identities name (:func:`_entries`).
    """
    out = Outcome()
    fresh, out.duplicates = consent_rows(ctx, items)
    if not fresh:
        return out
    claims = [
        claim_of(
            customer_id=r.customer_id,
            email=r.email,
            phone=r.phone,
            anonymous_id=r.anonymous_id,
        )
        for _, r, _ in fresh
    ]
    res = out.resolved(
        resolve(
            runtime=ctx.runtime,
            conn=ctx.conn,
            claims=claims,
            now=ctx.now,
            keyless=ctx.keyless,
        )
    )
    entries = _entries(ctx, fresh, claims, res, out)
    rows: list[dict[str, Any]] = []
    state: dict[tuple[str, str], Latest] = {}
    if only_changes:
        state = current_states(ctx, [e[3] for e in entries])
    for n, (_i, _position, r, sid, key) in enumerate(entries):
        at = ledger_time(r.occurred_at, ctx.now)
        if only_changes:
            latest = state.get((sid, r.purpose))
            if not change_only_records(latest, r.status, at):
                out.duplicates += 1
                continue
            rank = precedence(at, r.status, PENDING + n)
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
