"""Erasure: forget subjects everywhere, by crypto-shredding and through the registry.

Steps, per batch of subjects:

1. Add every id the subjects absorbed in merges (:mod:`cdp.profiles.former_ids`: a row written
   under such an id after its merge, e.g. an export's ledger row, could not move with it). Read
   what must survive the rows: the identity tokens (for the tombstones) and the destinations
   that received each subject (the recipients ledger, if the exports tables exist), so they can be
   told to delete it too.
2. Destroy the data keys (crypto-shredding). From here on every ciphertext of the subjects, in
   this database, in a replica or in any backup taken earlier, is unreadable. Doing this first
   means a crash later leaves rows nobody can read, and running the erasure again finishes it.
3. In one data transaction: write tombstones (identity tokens only, so a late or replayed record
   cannot recreate the person), then apply every registry entry (:mod:`cdp.privacy.registry`):
   delete, unlink or scrub; the consent ledger is opened for this transaction only
   (:func:`cdp.consent.triggers.ledger_unlocked`). The audit log is retained (pseudonymous ids,
   hash-chained: it still verifies).
4. On SQLite, clear the write-ahead logs of the key store and of the data database
   (:func:`cdp.crypto.scrub.clear_wal`): until then ``keys.db-wal`` and ``cdp.db-wal`` still hold
   earlier copies of the pages, with the wrapped data key and the ciphertexts. The deletes ran
   with ``secure_delete`` on (always on for the key store), so the checkpoint leaves zeros in the
   database files where the rows were. A reader holding an old snapshot can keep the checkpoint
   from completing: it is tried for about a second, and the outcome (``wal_cleared``) and the log
   say so; the keys are destroyed all the same, and the next erasure (or ``cdp keys scrub``)
   clears the WAL.

Retention uses the same path without tombstones (an inactive customer who comes back is welcome).
Erasure is idempotent: erasing an erased subject changes nothing and reports zero rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from cdp.clock import Clock, utcnow
from cdp.consent.triggers import ledger_unlocked
from cdp.crypto.normalize import IdentityKind
from cdp.crypto.scrub import clear_wal
from cdp.db.all_models import metadata
from cdp.db.id_lists import rewrite_id_lists
from cdp.db.models import Identity, Tombstone
from cdp.logging import get_logger
from cdp.privacy.erasure_lock import erasure_guard
from cdp.privacy.registry import SubjectTable, Treatment, present_entries
from cdp.profiles.former_ids import absorbed_ids
from cdp.runtime import Runtime

BATCH = 500

log = get_logger("cdp.privacy")


@dataclass
class ErasureOutcome:
    """What an erasure did, per table; never names the subject."""

    subjects: int = 0
    keys_shredded: int = 0
    tombstones: int = 0
    deleted: dict[str, int] = field(default_factory=dict)
    unlinked: dict[str, int] = field(default_factory=dict)
    scrubbed: dict[str, int] = field(default_factory=dict)
    retained: list[str] = field(default_factory=list)
    destinations: list[dict[str, str]] = field(default_factory=list)
    wal_cleared: dict[str, bool] = field(default_factory=dict)
    """Per SQLite database (``key_store``, ``data_database``): whether its WAL was checkpointed
    and truncated after the deletes (empty on PostgreSQL)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "subjects": self.subjects,
            "keys_shredded": self.keys_shredded,
            "tombstones": self.tombstones,
            "deleted": dict(sorted(self.deleted.items())),
            "unlinked": dict(sorted(self.unlinked.items())),
            "scrubbed": dict(sorted(self.scrubbed.items())),
            "retained": sorted(set(self.retained)),
            "destinations_to_notify": self.destinations,
            "wal_cleared": dict(self.wal_cleared),
        }


def _add(counter: dict[str, int], table: str, n: int) -> None:
    if n:
        counter[table] = counter.get(table, 0) + n


def recipients_of(conn: Connection, subject_ids: Sequence[str]) -> list[dict[str, str]]:
    """Destinations that received any of ``subject_ids`` (from every registered recipients
    ledger; empty until the exports tables exist)."""
    found: dict[str, dict[str, str]] = {}
    for entry in present_entries(metadata, sa.inspect(conn).get_table_names()):
        if entry.destination_column is None:
            continue
        table = metadata.tables[entry.table]
        dest = table.c[entry.destination_column]
        for (dest_id,) in conn.execute(
            sa.select(dest).where(table.c[entry.column].in_(subject_ids)).distinct()
        ):
            found[str(dest_id)] = {"destination_id": str(dest_id)}
    destinations = metadata.tables.get("export_destinations")
    if destinations is not None and found and sa.inspect(conn).has_table(destinations.name):
        for row in conn.execute(
            sa.select(destinations.c.id, destinations.c.name, destinations.c.kind).where(
                destinations.c.id.in_(list(found))
            )
        ):
            found[row.id].update(name=row.name, kind=row.kind)
    return [found[k] for k in sorted(found)]


def live_entries(runtime: Runtime) -> list[SubjectTable]:
    """Registry entries whose table is both modelled and migrated in this database."""
    with runtime.data_engine.connect() as conn:
        return present_entries(metadata, sa.inspect(conn).get_table_names())


def _tombstone_rows(conn: Connection, subject_ids: Sequence[str], now: Any) -> list[dict[str, Any]]:
    ident = Identity.__table__  # type: ignore[attr-defined]
    rows = conn.execute(
        sa.select(ident.c.kind, ident.c.token, ident.c.key_version).where(
            ident.c.subject_id.in_(subject_ids)
        )
    ).all()
    return [
        {"kind": r.kind, "token": r.token, "key_version": r.key_version, "erased_at": now}
        for r in rows
    ]


def _insert_tombstones(conn: Connection, rows: list[dict[str, Any]]) -> int:
    """Insert the tombstones not already there; return how many were new (executemany row
    counts are not reliable across drivers, so the new ones are found first)."""
    if not rows:
        return 0
    table = Tombstone.__table__  # type: ignore[attr-defined]
    have = {
        (r.kind, r.token)
        for r in conn.execute(
            sa.select(table.c.kind, table.c.token).where(
                table.c.token.in_([r["token"] for r in rows])
            )
        )
    }
    new = list(
        {(r["kind"], r["token"]): r for r in rows if (r["kind"], r["token"]) not in have}.values()
    )
    if new:
        dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        stmt = dialect_insert(table).on_conflict_do_nothing(index_elements=["kind", "token"])
        conn.execute(stmt, new)
    return len(new)


def _scrub(conn: Connection, table: sa.Table, column: str, subject_ids: Sequence[str]) -> int:
    wanted = set(subject_ids)
    return rewrite_id_lists(
        conn, table, column, subject_ids, lambda ids: [s for s in ids if s not in wanted]
    )


def _apply(
    conn: Connection, entry: SubjectTable, subject_ids: Sequence[str], outcome: ErasureOutcome
) -> None:
    table = metadata.tables[entry.table]
    col = table.c[entry.column]
    if entry.treatment is Treatment.RETAIN:
        outcome.retained.append(entry.table)
    elif entry.treatment is Treatment.DELETE:
        n = conn.execute(sa.delete(table).where(col.in_(subject_ids))).rowcount
        _add(outcome.deleted, entry.table, int(n or 0))
    elif entry.treatment is Treatment.UNLINK:
        values = {entry.column: None, **{c: None for c in entry.also_null}}
        n = conn.execute(sa.update(table).where(col.in_(subject_ids)).values(values)).rowcount
        _add(outcome.unlinked, entry.table, int(n or 0))
    else:
        _add(outcome.scrubbed, entry.table, _scrub(conn, table, entry.column, subject_ids))


@contextmanager
def _secure_delete(conn: Connection) -> Iterator[None]:
    """On SQLite, overwrite deleted content with zeros (so that freed pages of the database file
    do not keep the erased ids and tokens); PostgreSQL's dead tuples go with VACUUM."""
    if conn.dialect.name != "sqlite":
        yield
        return
    before = conn.exec_driver_sql("PRAGMA secure_delete").scalar()
    conn.exec_driver_sql("PRAGMA secure_delete = ON")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA secure_delete = {int(before or 0)}")


def clear_wals(runtime: Runtime) -> dict[str, bool]:
    """Checkpoint and truncate the WAL of the key store, then of the data database, where they
    are SQLite; return which were cleared. One not cleared is logged (never with an id): its WAL
    keeps old page copies until the next successful clear."""
    cleared: dict[str, bool] = {}
    for name, engine in (("key_store", runtime.key_engine), ("data_database", runtime.data_engine)):
        done = clear_wal(engine)
        if done is None:
            continue
        cleared[name] = done
        if not done:
            log.warning(
                "sqlite wal not cleared after erasure",
                database=name,
                reason="a reader held an older snapshot",
                retry="the next erasure, or `cdp keys scrub`",
            )
    return cleared


def erase_subjects(
    *,
    runtime: Runtime,
    subject_ids: Sequence[str],
    tombstone: bool = True,
    reason: str = "erasure",
    clock: Clock = utcnow,
    clear_wal: bool = True,
) -> ErasureOutcome:
    """Erase ``subject_ids`` everywhere (see the module doc); return what was done.

    ``clear_wal=False``: leave the SQLite WALs to the caller, which erases in several calls and
    clears them once at the end (:func:`clear_wals`; retention does)."""
    with erasure_guard(runtime):
        outcome = _erase(runtime, subject_ids, tombstone=tombstone, reason=reason, clock=clock)
        if clear_wal:
            outcome.wal_cleared = clear_wals(runtime)
    return outcome


def _erase(
    runtime: Runtime,
    subject_ids: Sequence[str],
    *,
    tombstone: bool,
    reason: str,
    clock: Clock,
) -> ErasureOutcome:
    outcome = ErasureOutcome(subjects=len(subject_ids))
    entries = live_entries(runtime)
    for start in range(0, len(subject_ids), BATCH):
        batch = list(dict.fromkeys(subject_ids[start : start + BATCH]))
        with runtime.data_engine.connect() as conn:
            # rows a merge could not move (a ledger row an export wrote under an id the person
            # had, after the merge) go with the person, and its destinations are told too
            batch += [i for i in absorbed_ids(conn, batch) if i not in batch]
            outcome.destinations.extend(recipients_of(conn, batch))
        outcome.keys_shredded += runtime.vault.shred(batch)
        with runtime.data_engine.begin() as conn, _secure_delete(conn):
            if tombstone:
                outcome.tombstones += _insert_tombstones(
                    conn, _tombstone_rows(conn, batch, clock())
                )
            with ledger_unlocked(conn, reason=reason):
                for entry in entries:
                    _apply(conn, entry, batch, outcome)
    return outcome


def erase_subject(
    *, runtime: Runtime, subject_id: str, tombstone: bool = True, clock: Clock = utcnow
) -> ErasureOutcome:
    """Erase one subject (a data-subject request)."""
    return erase_subjects(
        runtime=runtime, subject_ids=[subject_id], tombstone=tombstone, clock=clock
    )


def is_tombstoned(*, runtime: Runtime, kind: IdentityKind | str, raw: str) -> bool:
    """Whether an identity value belongs to an erased subject (any pseudonym-key version)."""
    table = Tombstone.__table__  # type: ignore[attr-defined]
    tokens = runtime.tokenizer.lookup_tokens(kind, raw)
    with runtime.data_engine.connect() as conn:
        hit = conn.execute(
            sa.select(sa.literal(1)).where(
                table.c.kind == IdentityKind(kind).value,
                table.c.token.in_([t.value for t in tokens]),
            )
        ).first()
    return hit is not None
