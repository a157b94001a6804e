"""A rectification reaches the destinations that hold the person (GDPR art. 16 and 19).

The sync state tracks membership, not values, so without more a corrected value would never
reach a destination that already holds the person, and a remove (built from the current values)
would carry the new email, which the destination never had, while the old one stayed there.
So, in the rectification's transaction (:func:`note_rectification`):

- every destination that holds or may hold the subject (a sync row) and allows a rectified field
  has the subject's sync rows made *unconfirmed*: its next run of each segment sends the person
  again, with the corrected value, while eligible (and withdraws them once not, as always);
- per such destination and field a row goes into ``export_rectified_values``: for a field the
  destination's removes match on (:data:`MATCHED`: email, phone — the identifying cells of a
  CSV, JSON Lines or webhook remove row, the hashed identifiers of a Meta or Google list) it
  holds the replaced value, sealed under the subject's data key (vault field
  ``rectified:<destination id>:<field>``: it cannot be moved to another subject, destination
  or field); none for the other fields. Two corrections before the next export keep the first
  replaced value (the one the destination has).

The destination's next export (:func:`pending`, :func:`settle`) reads its rows before its
removes (the decryption is audited), sends a remove carrying the replaced values for each such
subject — the subject's own remove, when it is no longer eligible, carries them in place of the
current ones, so a destination is never sent a value it did not have — and deletes the rows it
read when it closes normally, unless the remove was dead-lettered or the row was written after
the run staged its members (a correction that raced the run: its rows stay, and the subject's
sync rows are made unconfirmed again, so the next run sends the person and the remove again).
Erasure deletes the rows (privacy registry), and crypto-shredding has made them unreadable
before that.

:func:`recipients_to_notify` lists, for the request's outcome, the destinations the recipients
ledger says received a rectified field of the person (under its id or one it absorbed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from cdp.errors import CdpError
from cdp.exports.models import Destination, ExportRecipient, RectifiedValue, SyncMember
from cdp.logging import get_logger
from cdp.runtime import Runtime

RECTIFIED = cast(sa.Table, RectifiedValue.__table__)  # type: ignore[attr-defined]
SYNC = cast(sa.Table, SyncMember.__table__)  # type: ignore[attr-defined]
RECIPIENTS = cast(sa.Table, ExportRecipient.__table__)  # type: ignore[attr-defined]
DESTINATIONS = cast(sa.Table, Destination.__table__)  # type: ignore[attr-defined]

MATCHED = frozenset({"email", "phone"})
"""Fields a destination matches a remove on: their replaced value is withdrawn by a remove."""

log = get_logger("cdp.exports")


def vault_field(destination_id: str, name: str) -> str:
    """The vault field (AAD) of a replaced value kept for a destination."""
    return f"rectified:{destination_id}:{name}"


def _fields(text: str) -> set[str]:
    return {f for f in text.split(",") if f}


def note_rectification(
    conn: Connection,
    *,
    runtime: Runtime,
    subject_id: str,
    replaced: Mapping[str, str | None],
    now: datetime,
) -> list[str]:
    """The subject's fields ``replaced`` (field -> the value replaced, None when none was
    stored) were rectified: unconfirm the sync rows of the destinations holding a rectified
    field and keep the replaced values they match removes on (see the module doc). Returns the
    ids of those destinations."""
    held = conn.execute(
        sa.select(DESTINATIONS.c.id, DESTINATIONS.c.fields)
        .where(
            sa.select(sa.literal(1))
            .where(SYNC.c.destination_id == DESTINATIONS.c.id, SYNC.c.subject_id == subject_id)
            .exists()
        )
        .order_by(DESTINATIONS.c.id)
    ).all()
    touched: list[str] = []
    rows: list[dict[str, Any]] = []
    for dest_id, allowed in held:
        hit = sorted(set(replaced) & _fields(allowed))
        if not hit:
            continue
        touched.append(dest_id)
        for name in hit:
            old = replaced[name] if name in MATCHED else None
            sealed = None if old is None else runtime.vault.encrypt(
                subject_id, vault_field(dest_id, name), old
            )  # fmt: skip
            rows.append(
                {
                    "destination_id": dest_id,
                    "subject_id": subject_id,
                    "field": name,
                    "ciphertext": sealed,
                    "rectified_at": now,
                }
            )
    if not touched:
        return []
    conn.execute(
        sa.update(SYNC)
        .where(SYNC.c.subject_id == subject_id, SYNC.c.destination_id.in_(touched))
        .values(confirmed=False)
    )
    insert: Any = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = insert(RECTIFIED).values(rows)
    # a second correction before the export: the first replaced value is what the destination
    # holds; the later time tells a running export the row is newer than its staging
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["destination_id", "subject_id", "field"],
            set_={"rectified_at": stmt.excluded.rectified_at},
        )
    )
    return touched


def recipients_to_notify(
    conn: Connection, *, subject_ids: Sequence[str], fields: Sequence[str]
) -> list[dict[str, Any]]:
    """The destinations the recipients ledger says received any of ``fields`` of the person
    (``subject_ids``: the subject, then the ids it absorbed), with the fields concerned: those
    the controller must tell of the rectification (art. 19)."""
    found: dict[str, set[str]] = {}
    for dest_id, sent in conn.execute(
        sa.select(RECIPIENTS.c.destination_id, RECIPIENTS.c.fields)
        .where(RECIPIENTS.c.subject_id.in_(list(subject_ids)))
        .distinct()
    ):
        hit = set(fields) & _fields(sent)
        if hit:
            found.setdefault(dest_id, set()).update(hit)
    if not found:
        return []
    names = {
        r.id: (r.name, r.kind)
        for r in conn.execute(
            sa.select(DESTINATIONS.c.id, DESTINATIONS.c.name, DESTINATIONS.c.kind).where(
                DESTINATIONS.c.id.in_(list(found))
            )
        )
    }
    return [
        {
            "destination_id": d,
            "name": names[d][0],
            "kind": names[d][1],
            "fields": sorted(found[d]),
        }
        for d in sorted(found)
        if d in names
    ]


@dataclass
class Pending:
    """A destination's pending rectified values, as one export read them."""

    keys: list[tuple[str, str]] = field(default_factory=list)
    """(subject, field) of every row read."""
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    """subject -> {field: replaced value} of the rows that hold one and decrypt."""

    def fields(self) -> list[str]:
        return sorted({f for v in self.values.values() for f in v})


def pending(runtime: Runtime, *, destination_id: str) -> Pending:
    """The destination's rows, their replaced values decrypted (a subject whose key is gone —
    erased meanwhile — or whose value does not authenticate is left out, named by id in the
    log; its rows are still settled)."""
    with runtime.data_engine.connect() as conn:
        rows = conn.execute(
            sa.select(RECTIFIED.c.subject_id, RECTIFIED.c.field, RECTIFIED.c.ciphertext)
            .where(RECTIFIED.c.destination_id == destination_id)
            .order_by(RECTIFIED.c.subject_id, RECTIFIED.c.field)
        ).all()
    out = Pending()
    for sid, name, sealed in rows:
        out.keys.append((sid, name))
        if sealed is None:
            continue
        try:
            value = runtime.vault.decrypt(sid, vault_field(destination_id, name), bytes(sealed))
        except (CdpError, ValueError) as exc:  # shredded key, or a value that does not open
            log.error(
                "export skipped a rectified value that does not decrypt",
                subject_id=sid,
                error_type=type(exc).__name__,
            )
            continue
        out.values.setdefault(sid, {})[name] = value
    return out


def settle(
    conn: Connection,
    *,
    destination_id: str,
    read: Pending,
    failed: Sequence[str],
    staged_at: datetime | None,
) -> None:
    """In the closing transaction of an export that ended normally: delete the rows it read,
    except those of subjects whose remove failed (dead-lettered) and those written at or after
    ``staged_at`` (a correction that raced the run); then make the destination's sync rows of
    every subject with a row left unconfirmed, so the next run sends the person again."""
    skip = set(failed)
    done = [(s, f) for s, f in read.keys if s not in skip]
    stmt = sa.delete(RECTIFIED).where(
        RECTIFIED.c.destination_id == destination_id,
        RECTIFIED.c.subject_id == sa.bindparam("sid"),
        RECTIFIED.c.field == sa.bindparam("name"),
    )
    if staged_at is not None:
        stmt = stmt.where(RECTIFIED.c.rectified_at < staged_at)
    if done:
        conn.execute(stmt, [{"sid": s, "name": f} for s, f in done])
    left = (
        sa.select(RECTIFIED.c.subject_id)
        .where(RECTIFIED.c.destination_id == destination_id)
        .scalar_subquery()
    )
    conn.execute(
        sa.update(SYNC)
        .where(
            SYNC.c.destination_id == destination_id,
            SYNC.c.subject_id.in_(left),
            SYNC.c.confirmed.is_(True),
        )
        .values(confirmed=False)
    )
