"""Merging two subjects found to be one person.

The survivor (chosen by the caller: the older one) takes over the absorbed subject's identities,
orders, events, consent history and PII, then the absorbed subject row is deleted and a
``subject_merges`` row records the merge. Ciphertexts are bound to their subject (the AAD names
it), so the absorbed subject's PII and event properties are decrypted under its data key and
re-encrypted under the survivor's. The absorbed data key is destroyed only after the transaction
commits (:meth:`cdp.profiles.resolve.Resolution.finish`), so a rolled-back merge loses nothing.

Consent: where the two subjects' current states (read by the consent service's rule, on a tie a
withdrawal) differ for a purpose (one granted, the other withdrawn), a withdrawal is appended at
merge time (or at the later entry's time, if one lies ahead of it), so the derived state after the
merge is the most restrictive of the two. The survivor keeps its own PII values; the absorbed
subject's values fill only the fields the survivor lacks (custom traits are merged key by key,
survivor first).

Tables of other capabilities that reference ``subjects.id``, and the recomputed trait tables
(which name their subject without a foreign key, :mod:`cdp.traits.recompute_lock`), are moved
over too when they can be (each in a savepoint); rows that would collide with the survivor's own
(e.g. one computed trait row per subject) are deleted, as the cascade would, and get recomputed.
Before it locks the two subjects, a merge waits for the trait recompute steps in progress and
holds new ones off until it commits (:func:`cdp.traits.recompute_lock.exclude_recomputes`): a
step sees the merge whole or not at all, never the survivor without the orders it just took over
nor a points line for the absorbed subject it is deleting.

The privacy payloads of the absorbed subject (stored access packages, the corrections of a
rectification not run yet) are re-encrypted under the survivor's key like the PII (their AAD binds
the request and kind, :func:`cdp.privacy.models.payload_field`): left under the absorbed key, which
the merge destroys, the package could not be downloaded nor the corrections applied. A payload
under its request's own key (no subject) is not the subject's and stays as it is.

The exports' recipients ledger and sync state name their subject without a foreign key too; they
move to the survivor by :func:`cdp.exports.merge.move_export_rows` (one row kept where both
subjects have one), so erasure and access requests of the survivor find every destination and
the next export neither re-adds the person nor loses track of them.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from cdp.consent.ledger_state import ConsentState, current_state
from cdp.consent.models import ConsentEvent
from cdp.db.all_models import metadata
from cdp.db.models import Identity, Subject
from cdp.exports.merge import move_export_rows
from cdp.privacy.models import PrivacyPayload, payload_field
from cdp.profiles.models import Event, Order, SubjectMerge
from cdp.profiles.pii_records import delete_records, read_sealed, write_sealed
from cdp.runtime import Runtime
from cdp.traits.recompute_lock import RECOMPUTED, exclude_recomputes

CUSTOM_TRAITS_FIELD = "custom_traits"
_HANDLED = {
    "identities",
    "pii_records",
    "orders",
    "events",
    "consent_events",
    "subject_merges",
    "privacy_payloads",
}


def event_field(message_id: str) -> str:
    """The vault field (and AAD) of an event's properties."""
    return f"event:{message_id}"


def _current_consent(conn: Connection, subject_id: str) -> dict[str, ConsentState]:
    """The subject's explicit state per purpose, read by the consent service's own rule (the
    latest entry; on equal times a withdrawal wins). Purposes without an entry are left out:
    their default is not a choice the person made."""
    return {
        purpose: state
        for purpose, state in current_state(conn=conn, subject_id=subject_id).items()
        if not state.is_default
    }


def _merge_consent(conn: Connection, survivor: str, absorbed: str, now: datetime) -> None:
    ce = ConsentEvent.__table__  # type: ignore[attr-defined]
    mine = _current_consent(conn, survivor)
    theirs = _current_consent(conn, absorbed)
    conn.execute(sa.update(ce).where(ce.c.subject_id == absorbed).values(subject_id=survivor))
    rows = []
    for purpose in sorted(set(mine) & set(theirs)):
        if mine[purpose].status != theirs[purpose].status:
            # dated no earlier than either entry (one may lie a little ahead, within the clock
            # skew allowed), so that the withdrawal is the latest entry: a tie goes to it too
            at = max(
                now, *(s.occurred_at for s in (mine[purpose], theirs[purpose]) if s.occurred_at)
            )
            key = hashlib.sha256(f"merge|{survivor}|{absorbed}|{purpose}".encode()).hexdigest()
            rows.append(
                {
                    "subject_id": survivor,
                    "purpose": purpose,
                    "status": "withdrawn",
                    "occurred_at": at,
                    "recorded_at": now,
                    "source": "identity_merge",
                    "notice_version": None,
                    "mechanism": "import",
                    "recorded_by": "ingest:merge",
                    "dedupe_key": key,
                }
            )
    if rows:
        conn.execute(sa.insert(ce), rows)


def _merge_pii(
    runtime: Runtime, conn: Connection, survivor: str, absorbed: str, now: datetime
) -> None:
    """The absorbed subject's fields join the survivor's (re-encrypted under the survivor's key:
    the AAD binds each ciphertext to its subject); the survivor's own values win, custom traits
    are merged key by key."""
    vault = runtime.vault
    sealed = read_sealed(conn, sorted((survivor, absorbed)), lock=True)
    moving = sealed.get(absorbed)
    if not moving:
        return
    have = sealed.get(survivor, {})
    values = vault.decrypt_fields(absorbed, moving)
    moved = {f: v for f, v in values.items() if f not in have}
    if CUSTOM_TRAITS_FIELD in values and CUSTOM_TRAITS_FIELD in have:
        merged = json.loads(values[CUSTOM_TRAITS_FIELD])
        merged.update(
            json.loads(vault.decrypt(survivor, CUSTOM_TRAITS_FIELD, have[CUSTOM_TRAITS_FIELD]))
        )
        moved[CUSTOM_TRAITS_FIELD] = json.dumps(merged, sort_keys=True)
    record = dict(have)
    record.update(vault.encrypt_fields(survivor, moved))
    delete_records(conn, [absorbed])
    write_sealed(conn, {survivor: record}, existing=sealed.keys() & {survivor}, now=now)


def _merge_events(runtime: Runtime, conn: Connection, survivor: str, absorbed: str) -> None:
    ev = Event.__table__  # type: ignore[attr-defined]
    vault = runtime.vault
    moved = []
    for eid, message_id, blob in conn.execute(
        sa.select(ev.c.id, ev.c.message_id, ev.c.properties_ct).where(ev.c.subject_id == absorbed)
    ):
        ct = None
        if blob is not None:
            fld = event_field(message_id)
            ct = vault.encrypt(survivor, fld, vault.decrypt(absorbed, fld, bytes(blob)))
        moved.append({"eid": eid, "ct": ct})
    if moved:
        conn.execute(
            sa.update(ev)
            .where(ev.c.id == sa.bindparam("eid"))
            .values(subject_id=survivor, properties_ct=sa.bindparam("ct")),
            moved,
        )


def _merge_payloads(runtime: Runtime, conn: Connection, survivor: str, absorbed: str) -> None:
    """The absorbed subject's privacy payloads, re-encrypted under the survivor's key."""
    pay = PrivacyPayload.__table__  # type: ignore[attr-defined]
    vault = runtime.vault
    moved = []
    for request_id, kind, blob in conn.execute(
        sa.select(pay.c.request_id, pay.c.kind, pay.c.ciphertext).where(
            pay.c.subject_id == absorbed
        )
    ):
        fld = payload_field(request_id, kind)
        ct = vault.encrypt(survivor, fld, vault.decrypt(absorbed, fld, bytes(blob)))
        moved.append({"rid": request_id, "pkind": kind, "ct": ct})
    if moved:
        conn.execute(
            sa.update(pay)
            .where(pay.c.request_id == sa.bindparam("rid"), pay.c.kind == sa.bindparam("pkind"))
            .values(subject_id=survivor, ciphertext=sa.bindparam("ct")),
            moved,
        )


def _subject_columns() -> list[sa.Column[Any]]:
    """The columns naming a subject outside the tables handled above: the recomputed trait
    tables' (no foreign key; first, in the recomputes' lock order), then every foreign key to
    ``subjects.id``."""
    cols: list[sa.Column[Any]] = [metadata.tables[name].c.subject_id for name in RECOMPUTED]
    for table in metadata.sorted_tables:
        if table.name in _HANDLED or table.name == "subjects":
            continue
        cols.extend(
            fk.parent
            for fk in table.foreign_keys
            if fk.column.table.name == "subjects" and fk.column.name == "id"
        )
    return cols


def _move_other_tables(conn: Connection, survivor: str, absorbed: str) -> None:
    for col in _subject_columns():
        table = col.table
        try:
            with conn.begin_nested():
                conn.execute(sa.update(table).where(col == absorbed).values({col.name: survivor}))
        except IntegrityError:  # collides with the survivor's own row: dropped, gets recomputed
            conn.execute(sa.delete(table).where(col == absorbed))


class SubjectGoneError(Exception):
    """A subject of a merge no longer exists: a concurrent writer merged (or erased) it after
    this batch resolved its identities. The batch must be resolved again (the ingestion
    pipeline retries it), never recorded as a merge of a subject that is already gone."""


def _lock_pair(conn: Connection, survivor: str, absorbed: str) -> None:
    """Lock both subject rows (PostgreSQL: ``FOR UPDATE``, in id order, so two merges of the
    same pair cannot deadlock on the order; SQLite's writer holds the database already) and
    check that both still exist."""
    subjects = Subject.__table__  # type: ignore[attr-defined]
    found = set(
        conn.execute(
            sa.select(subjects.c.id)
            .where(subjects.c.id.in_([survivor, absorbed]))
            .order_by(subjects.c.id)
            .with_for_update()
        ).scalars()
    )
    if found != {survivor, absorbed}:
        raise SubjectGoneError("a subject to merge was merged or erased by a concurrent writer")


def merge_subjects(
    *,
    runtime: Runtime,
    conn: Connection,
    survivor: str,
    absorbed: str,
    linked_by: str,
    now: datetime,
) -> None:
    """Move everything of ``absorbed`` to ``survivor``; delete ``absorbed`` (one transaction).
    Raises :class:`SubjectGoneError` if either is gone (a concurrent merge took it first)."""
    exclude_recomputes(conn)
    _lock_pair(conn, survivor, absorbed)
    subjects = Subject.__table__  # type: ignore[attr-defined]
    ident = Identity.__table__  # type: ignore[attr-defined]
    orders = Order.__table__  # type: ignore[attr-defined]
    merges = SubjectMerge.__table__  # type: ignore[attr-defined]
    # the merge is recorded first: the consent ledger's triggers let a subject move through only
    # when subject_merges says the new subject absorbed the old one
    conn.execute(
        sa.update(merges).where(merges.c.survivor_id == absorbed).values(survivor_id=survivor)
    )
    conn.execute(
        sa.insert(merges).values(
            survivor_id=survivor, merged_id=absorbed, linked_by=linked_by, merged_at=now
        )
    )
    conn.execute(sa.update(ident).where(ident.c.subject_id == absorbed).values(subject_id=survivor))
    conn.execute(
        sa.update(orders).where(orders.c.subject_id == absorbed).values(subject_id=survivor)
    )
    _merge_consent(conn, survivor, absorbed, now)
    _merge_pii(runtime, conn, survivor, absorbed, now)
    _merge_events(runtime, conn, survivor, absorbed)
    _merge_payloads(runtime, conn, survivor, absorbed)
    _move_other_tables(conn, survivor, absorbed)
    move_export_rows(conn, survivor=survivor, absorbed=absorbed)
    signed = conn.execute(
        sa.select(sa.func.min(subjects.c.signed_up_at)).where(
            subjects.c.id.in_([survivor, absorbed])
        )
    ).scalar()
    conn.execute(
        sa.update(subjects)
        .where(subjects.c.id == survivor)
        .values(signed_up_at=signed, updated_at=now)
    )
    conn.execute(sa.delete(subjects).where(subjects.c.id == absorbed))
