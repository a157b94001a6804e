"""Customers: resolve each record to its subject, then write the PII fields that changed.

A record for a new subject inserts its ciphertexts. A record for a known subject is compared with
what is stored (decrypt and compare, in memory): changed fields are re-encrypted and updated, and
the record counts as ``updated``; when nothing differs it counts as a duplicate and nothing is
written — so ingesting the same file again leaves the database byte for byte as it was. Absent
fields never erase stored ones.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from cdp.db.models import Subject
from cdp.ingest.batch import IN_CHUNK, BatchContext, Outcome, claim_of, refusal
from cdp.ingest.bulk import update_rows
from cdp.ingest.customer_record import CUSTOM_TRAITS_FIELD, CustomerRecord
from cdp.profiles.pii_records import read_sealed, write_sealed
from cdp.profiles.resolve import Claim, resolve

_traits_json = json.JSONEncoder(sort_keys=True, default=str).encode
"""``json.dumps(traits, sort_keys=True, default=str)`` without a new encoder a record."""


def _wanted(record: CustomerRecord) -> dict[str, str]:
    values = record.pii()
    if record.traits:
        values[CUSTOM_TRAITS_FIELD] = _traits_json(record.traits)
    return values


def record_claim(r: CustomerRecord) -> Claim:
    """The identities a customer record claims: its own id, email, phone and anonymous id."""
    return claim_of(
        customer_id=r.customer_id, email=r.email, phone=r.phone, anonymous_id=r.anonymous_id
    )


def write_customers(
    ctx: BatchContext,
    items: Sequence[tuple[int, CustomerRecord]],
    *,
    live: bool = False,
    claims: Sequence[Claim] | None = None,
) -> Outcome:
    """Ingest one batch of customer records in ``ctx.conn``'s transaction.

    ``live``: the records are current (Segment identify calls, sent as things happen), so one
    without ``created_at`` applies like the newest; in a file such a record is of unknown age and
    only fills what the profile lacks once the profile holds a dated record. ``claims``: the
    identities each record claims, when not its own fields (a Segment alias whose ``previousId``
    is a former ``userId``: :mod:`cdp.ingest.segment_alias`)."""
    out = Outcome()
    if not items:
        return out
    conn, vault = ctx.conn, ctx.runtime.vault
    records = [r for _, r in items]
    times = [r.created_at for r in records]
    res = out.resolved(
        resolve(
            runtime=ctx.runtime,
            conn=conn,
            claims=claims if claims is not None else [record_claim(r) for r in records],
            now=ctx.now,
            keyless=ctx.keyless,
            signed_up=times,
            profile_as_of=times,
        )
    )

    known = sorted({s for s in res.subjects if s is not None and s not in res.created})
    stored: dict[str, dict[str, str]] = {s: {} for s in known}
    sealed: dict[str, dict[str, bytes]] = {}
    signed: dict[str, datetime | None] = {}
    as_of: dict[str, datetime | None] = {}
    st = Subject.__table__  # type: ignore[attr-defined]
    if known:
        vault.warm(known)
        sealed = read_sealed(conn, known, lock=True)
        stored.update({s: vault.decrypt_fields(s, blobs) for s, blobs in sealed.items()})
        for start in range(0, len(known), IN_CHUNK):
            chunk = known[start : start + IN_CHUNK]
            for sid, signup, profile_as_of in conn.execute(
                sa.select(st.c.id, st.c.signed_up_at, st.c.profile_as_of).where(st.c.id.in_(chunk))
            ):
                signed[sid] = signup
                as_of[sid] = profile_as_of
    for sid, i in res.creator.items():
        # For the counts below, a new subject starts as its first record left it; its row was
        # inserted with the end state (the earliest created_at, the latest as profile_as_of).
        signed[sid] = records[i].created_at
        as_of[sid] = None

    # Apply the batch's records in order. Precedence makes the result independent of the order
    # of rows and batches: a record older (by its created_at) than the one the profile holds,
    # or (in a file) without a created_at while the profile has one, only fills fields the
    # profile lacks; the sign-up date is the earliest seen. A subject is
    # written only if its end state differs from what is stored, and its records count as
    # updates only then — so a second run of any file is all duplicates and changes nothing.
    final: dict[str, dict[str, str]] = {}
    final_signup = dict(signed)
    final_as_of = dict(as_of)
    members: list[tuple[int, str]] = []
    for i, (position, record) in enumerate(items):
        sid = res.subjects[i]
        if sid is None:
            out.rejects.append(refusal(position, res.refused[i]))
            continue
        state = final.setdefault(sid, dict(stored.get(sid, {})))
        at = record.created_at
        held = final_as_of.get(sid)
        wins = held is None or (at >= held if at is not None else live)
        for fld, value in _wanted(record).items():
            if fld == CUSTOM_TRAITS_FIELD and fld in state:
                base, extra = json.loads(state[fld]), json.loads(value)
                merged = {**base, **extra} if wins else {**extra, **base}
                value = json.dumps(merged, sort_keys=True)
            elif not wins and fld in state:
                continue
            state[fld] = value
        if at is not None:
            if wins:
                final_as_of[sid] = at
            first = final_signup.get(sid)
            final_signup[sid] = at if first is None else min(first, at)
        members.append((i, sid))
    meta_dirty = {
        s
        for s in final
        if final_signup.get(s) != signed.get(s) or final_as_of.get(s) != as_of.get(s)
    }
    dirty = meta_dirty | {s for s, st_ in final.items() if st_ != stored.get(s, {})}
    for i, sid in members:
        if res.creator.get(sid) == i:
            out.inserted += 1
        elif sid in dirty:
            out.updated += 1
        else:
            out.duplicates += 1

    to_write: dict[str, dict[str, bytes]] = {}
    for sid, state in final.items():
        old = stored.get(sid, {})
        changed = {f: v for f, v in state.items() if old.get(f) != v}
        if changed:  # unchanged fields keep their ciphertexts
            to_write[sid] = {**sealed.get(sid, {}), **vault.encrypt_fields(sid, changed)}
    touched = set(to_write)
    write_sealed(conn, to_write, existing=sealed.keys(), now=ctx.now)
    bumps = [
        (ctx.now, final_signup.get(sid), final_as_of.get(sid), sid)
        for sid in sorted((touched | meta_dirty) - res.created)
    ]
    update_rows(conn, st, "id", ("updated_at", "signed_up_at", "profile_as_of"), bumps)
    return out
