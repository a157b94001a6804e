"""Behaviour events: idempotent by message id; properties encrypted under the subject's key.

A message without an id gets a deterministic one (a hash of its content), so that replaying the
same line or request is still recognised. Properties are free-form and may carry personal data,
so they are stored as JSON encrypted under the subject's data key with the vault field
``event:<message_id>``; they vanish with the key on erasure.

An event older than the longest retention window of the purposes that keep events
(:func:`cdp.privacy.registry.longest_retention`: 730 days) when it arrives is counted
``expired`` and not stored: retention would keep it for no one, whatever their consent, so
storing it (and resolving, or creating, its subject) would be processing without a basis. It is
judged after the replay check (an event already stored is a duplicate) and by its own time, the
one it would be stored with.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from cdp.ingest.batch import BatchContext, Outcome, claim_of, existing, refusal
from cdp.ingest.bulk import insert_rows
from cdp.ingest.records import EventRecord
from cdp.privacy.registry import longest_retention
from cdp.profiles.merge import event_field
from cdp.profiles.models import Event
from cdp.profiles.resolve import resolve


def message_id_of(r: EventRecord) -> str:
    """The record's message id, or a content hash when it has none."""
    if r.message_id:
        return r.message_id
    body = r.model_dump(mode="json", exclude={"message_id"})
    return "h-" + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:60]


def write_events(ctx: BatchContext, items: Sequence[tuple[int, EventRecord]]) -> Outcome:
    """Ingest one batch of events in ``ctx.conn``'s transaction."""
    out = Outcome()
    if not items:
        return out
    et = Event.__table__  # type: ignore[attr-defined]
    ids = [(p, r, message_id_of(r)) for p, r in items]
    stored = existing(ctx.conn, et.c.message_id, (m for _, _, m in ids))
    fresh, seen = [], set()
    window = longest_retention("events")
    oldest = None if window is None else ctx.now - window
    for p, r, mid in ids:
        if mid in stored or mid in seen:
            out.duplicates += 1
            continue
        seen.add(mid)
        if oldest is not None and r.timestamp < oldest:
            out.expired += 1  # past every window: kept for no one
            continue
        fresh.append((p, r, mid))
    if not fresh:
        return out
    res = out.resolved(
        resolve(
            runtime=ctx.runtime,
            conn=ctx.conn,
            claims=[
                claim_of(customer_id=r.customer_id, email=r.email, anonymous_id=r.anonymous_id)
                for _, r, _ in fresh
            ],
            now=ctx.now,
            keyless=ctx.keyless,
        )
    )
    vault = ctx.runtime.vault
    rows: list[dict[str, Any]] = []
    for i, (p, r, mid) in enumerate(fresh):
        sid = res.subjects[i]
        if sid is None:
            out.rejects.append(refusal(p, res.refused[i]))
            continue
        props = None
        if r.properties:
            text = json.dumps(r.properties, sort_keys=True, separators=(",", ":"), default=str)
            props = vault.encrypt(sid, event_field(mid), text)
        rows.append(
            {
                "message_id": mid,
                "subject_id": sid,
                "type": r.type,
                "name": r.event,
                "properties_ct": props,
                "occurred_at": r.timestamp,
                "received_at": ctx.now,
                "source": ctx.source[:64],
            }
        )
    if rows:
        insert_rows(ctx.conn, et, rows)
        out.inserted = len(rows)
    return out
