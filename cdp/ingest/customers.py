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

import sqlalchemy as sa

from cdp.db.models import PiiValue, Subject
from cdp.ingest.batch import IN_CHUNK, BatchContext, Outcome, Reject, claim_of
from cdp.ingest.records import CUSTOM_TRAITS_FIELD, CustomerRecord
from cdp.profiles.resolve import resolve


def _wanted(record: CustomerRecord) -> dict[str, str]:
    values = record.pii()
    if record.traits:
        values[CUSTOM_TRAITS_FIELD] = json.dumps(record.traits, sort_keys=True, default=str)
    return values


def write_customers(ctx: BatchContext, items: Sequence[tuple[int, CustomerRecord]]) -> Outcome:
    """Ingest one batch of customer records in ``ctx.conn``'s transaction."""
    out = Outcome()
    if not items:
        return out
    conn, vault = ctx.conn, ctx.runtime.vault
    records = [r for _, r in items]
    res = out.resolved(
        resolve(
            runtime=ctx.runtime,
            conn=conn,
            claims=[
                claim_of(
                    customer_id=r.customer_id,
                    email=r.email,
                    phone=r.phone,
                    anonymous_id=r.anonymous_id,
                )
                for r in records
            ],
            now=ctx.now,
            signed_up=[r.created_at for r in records],
        )
    )

    known = sorted({s for s in res.subjects if s is not None and s not in res.created})
    stored: dict[str, dict[str, str]] = {s: {} for s in known}
    signed: dict[str, object] = {}
    if known:
        vault.warm(known)
        pv = PiiValue.__table__  # type: ignore[attr-defined]
        st = Subject.__table__  # type: ignore[attr-defined]
        for start in range(0, len(known), IN_CHUNK):
            chunk = known[start : start + IN_CHUNK]
            for sid, fld, blob in conn.execute(
                sa.select(pv.c.subject_id, pv.c.field, pv.c.ciphertext).where(
                    pv.c.subject_id.in_(chunk)
                )
            ):
                stored[sid][fld] = vault.decrypt(sid, fld, bytes(blob))
            for sid, at in conn.execute(
                sa.select(st.c.id, st.c.signed_up_at).where(st.c.id.in_(chunk))
            ):
                signed[sid] = at

    # Apply the batch's records in order; a subject is written only if its end state differs
    # from what is stored, and its records count as updates only then (so a file describing one
    # person twice with different values still re-ingests as all duplicates).
    final: dict[str, dict[str, str]] = {}
    for sid, i in res.creator.items():  # new subjects were inserted with their creator's date
        signed[sid] = records[i].created_at
    final_signup = dict(signed)
    members: list[tuple[int, int, str]] = []
    for i, (position, record) in enumerate(items):
        sid = res.subjects[i]
        if sid is None:
            out.rejects.append(Reject(position, "erased", (), "matches an erased subject"))
            continue
        state = final.setdefault(sid, dict(stored.get(sid, {})))
        for fld, value in _wanted(record).items():
            if fld == CUSTOM_TRAITS_FIELD and fld in state:
                merged = json.loads(state[fld])
                merged.update(json.loads(value))
                value = json.dumps(merged, sort_keys=True)
            state[fld] = value
        if record.created_at is not None:
            final_signup[sid] = record.created_at
        members.append((i, position, sid))
    signup_dirty = {s for s, at in final_signup.items() if signed.get(s) != at}
    dirty = signup_dirty | {s for s, st_ in final.items() if st_ != stored.get(s, {})}
    for i, _position, sid in members:
        if res.creator.get(sid) == i:
            out.inserted += 1
        elif sid in dirty:
            out.updated += 1
        else:
            out.duplicates += 1
    signed = final_signup

    inserts, updates, touched = [], [], set()
    for sid, state in final.items():
        old = stored.get(sid, {})
        changed = {f: v for f, v in state.items() if old.get(f) != v}
        if not changed:
            continue
        touched.add(sid)
        blobs = vault.encrypt_fields(sid, changed)
        for fld, blob in blobs.items():
            if fld in old:
                updates.append({"s": sid, "f": fld, "c": blob})
            else:
                inserts.append(
                    {"subject_id": sid, "field": fld, "ciphertext": blob, "updated_at": ctx.now}
                )
    pv = PiiValue.__table__  # type: ignore[attr-defined]
    st = Subject.__table__  # type: ignore[attr-defined]
    if inserts:
        conn.execute(sa.insert(pv), inserts)
    if updates:
        conn.execute(
            sa.update(pv)
            .where(pv.c.subject_id == sa.bindparam("s"), pv.c.field == sa.bindparam("f"))
            .values(ciphertext=sa.bindparam("c"), updated_at=ctx.now),
            updates,
        )
    bumps = [{"sid": sid, "su": signed.get(sid)} for sid in sorted(touched | signup_dirty)]
    if bumps:
        conn.execute(
            sa.update(st)
            .where(st.c.id == sa.bindparam("sid"))
            .values(updated_at=ctx.now, signed_up_at=sa.bindparam("su")),
            bumps,
        )
    return out
