"""Erasure: forget subjects everywhere, by crypto-shredding and through the registry.

Steps, per batch of subjects:

1. Follow every id asked for that a merge absorbed to the subject holding it now (one person),
   and add every id the subjects absorbed in merges (:mod:`cdp.profiles.former_ids`: a row written
   under such an id after its merge, e.g. an export's ledger row, could not move with it). Read
   what must survive the rows: the identity tokens (for the tombstones) and the destinations
   that received each subject (the recipients ledger, if the exports tables exist), so they can be
   told to delete it too. The caller's ``record`` (its audit record) is given these ids, the
   subjects erased first, then the ids they absorbed, and commits before anything is destroyed.
2. Destroy the data keys (crypto-shredding). From here on every ciphertext of the subjects, in
   this database, in a replica or in any backup taken earlier, is unreadable. Doing this first
   means a crash later leaves rows nobody can read, and running the erasure again finishes it.
3. In one data transaction: lock the subject rows and check that no merge moved an id since
   step 1 (if one did, roll back and start again from step 1, a few times at most); write
   tombstones (identity tokens only, so a late or replayed record cannot recreate the person),
   then apply every registry entry (:mod:`cdp.privacy.registry`):
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

import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from cdp.clock import Clock, utcnow
from cdp.consent.triggers import ledger_unlocked
from cdp.crypto.normalize import IdentityKind
from cdp.crypto.scrub import clear_wal
from cdp.db.all_models import metadata
from cdp.db.id_lists import rewrite_id_lists
from cdp.db.models import Subject, Tombstone
from cdp.errors import ErasureContentionError
from cdp.logging import get_logger
from cdp.privacy.erasure_lock import erasure_guard
from cdp.privacy.registry import SubjectTable, Treatment, present_entries
from cdp.privacy.tombstones import insert_tombstones, tombstone_rows
from cdp.profiles.former_ids import absorbed_ids, current_ids
from cdp.runtime import Runtime

BATCH = 500

log = get_logger("cdp.privacy")


@dataclass
class ErasureOutcome:
    """What an erasure did, per table; never names the subject."""

    subjects: int = 0
    """Subjects erased: those holding the ids asked for (ids of one person count once)."""
    absorbed_ids: int = 0
    """Ids the erased subjects had absorbed in merges, erased with them."""
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
    identities: list[tuple[str, str]] = field(default_factory=list, repr=False)
    """(kind, token) of every identity tombstoned (not reported: the runner clears the requests
    filed with one of them)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "subjects": self.subjects,
            "absorbed_ids": self.absorbed_ids,
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


Recorder = Callable[[list[str]], object]
"""Writes and commits the caller's audit record of an erasure, given the ids about to be erased:
the subjects that hold the ids asked for now, then every id they absorbed. Called before the keys
of these ids are destroyed, once per batch, and again if a merge changed them meanwhile."""


def erase_subjects(
    *,
    runtime: Runtime,
    subject_ids: Sequence[str],
    tombstone: bool = True,
    reason: str = "erasure",
    clock: Clock = utcnow,
    clear_wal: bool = True,
    record: Recorder | None = None,
    follow_merges: bool = True,
) -> ErasureOutcome:
    """Erase ``subject_ids`` everywhere (see the module doc); return what was done.

    ``clear_wal=False``: leave the SQLite WALs to the caller, which erases in several calls and
    clears them once at the end (:func:`clear_wals`; retention does). ``record``: see
    :data:`Recorder` (an error it raises stops the erasure before the keys of its ids go).
    ``follow_merges=False``: an id a merge has absorbed is skipped, not followed to the subject
    holding it now (retention erases the subjects it judged inactive, never their survivors)."""
    how = _How(tombstone, reason, clock, record, follow_merges)
    with erasure_guard(runtime):
        outcome = _erase(runtime, subject_ids, how)
        if clear_wal:
            outcome.wal_cleared = clear_wals(runtime)
    return outcome


@dataclass(frozen=True, slots=True)
class _How:
    """How one :func:`erase_subjects` call erases (its options, passed down as one)."""

    tombstone: bool
    reason: str
    clock: Clock
    record: Recorder | None
    follow_merges: bool


ATTEMPTS = 5
"""Data transactions an erasure batch tries before it gives up (:class:`ErasureContentionError`)."""

_RETRIED = frozenset({"40P01", "40001"})  # PostgreSQL: deadlock detected, serialization failure


def _retryable(exc: DBAPIError) -> bool:
    """A deadlock or serialization failure: the transaction was rolled back; run it again."""
    return getattr(exc.orig, "sqlstate", None) in _RETRIED


class _MovedError(Exception):
    """A subject of the batch was merged (or absorbed another) after the batch resolved it."""


def _person(
    conn: Connection, requested: list[str], follow_merges: bool = True
) -> tuple[list[str], list[str]]:
    """The subjects that hold ``requested`` now (an id absorbed by a merge: its survivor, the same
    person) and, after them, every id those absorbed, transitively (rows a merge could not move,
    e.g. a ledger row an export wrote under an id the person had after the merge, go with the
    person, and its destinations are told too). ``follow_merges=False``: an id absorbed by a
    merge is left out instead of followed to its survivor (retention: the survivor is someone
    whose activity was never judged)."""
    held = current_ids(conn, requested)
    if not follow_merges:
        held = {s: c for s, c in held.items() if c == s}
    current = list(dict.fromkeys(held.values()))
    return current, current + [i for i in absorbed_ids(conn, current) if i not in current]


def _lock_subjects(conn: Connection, subject_ids: list[str]) -> None:
    """Lock the subject rows (PostgreSQL: ``FOR UPDATE``, in id order like a merge's
    :func:`cdp.profiles.merge._lock_pair`, so no merge of them runs until the erasure commits;
    SQLite: the erasure's ``BEGIN IMMEDIATE`` holds the writer lock already)."""
    subjects = Subject.__table__  # type: ignore[attr-defined]
    for start in range(0, len(subject_ids), BATCH):
        conn.execute(
            sa.select(subjects.c.id)
            .where(subjects.c.id.in_(sorted(subject_ids)[start : start + BATCH]))
            .order_by(subjects.c.id)
            .with_for_update()
        ).all()


def _erase_batch(
    runtime: Runtime,
    requested: list[str],
    entries: list[SubjectTable],
    how: _How,
    outcome: ErasureOutcome,
) -> None:
    """Erase one batch: resolve, shred, then the data transaction, which locks the subjects and
    checks that no merge moved them since they were resolved; if one did (or the transaction
    deadlocked), it is rolled back and the batch resolved again, :data:`ATTEMPTS` times at most.
    A key destroyed by an attempt that is rolled back belongs to the person all the same (an id
    it had): the next attempt erases its rows. ``record`` is called before each shred of ids
    it was not given yet."""
    recorded: list[str] | None = None
    for attempt in range(ATTEMPTS):
        with runtime.data_engine.connect() as conn:
            current, batch = _person(conn, requested, how.follow_merges)
            if not batch:  # every id merged away, and not followed
                return
            destinations = recipients_of(conn, batch)
        if how.record is not None and batch != recorded:
            how.record(batch)
            recorded = batch
        outcome.keys_shredded += runtime.vault.shred(batch)
        done = ErasureOutcome()
        try:
            with runtime.data_engine.begin() as conn, _secure_delete(conn):
                _lock_subjects(conn, current)
                if _person(conn, requested, how.follow_merges) != (current, batch):
                    raise _MovedError
                if how.tombstone:
                    rows = tombstone_rows(conn, batch, how.clock())
                    done.tombstones = insert_tombstones(conn, rows)
                    done.identities = [(r["kind"], r["token"]) for r in rows]
                with ledger_unlocked(conn, reason=how.reason):
                    for entry in entries:
                        _apply(conn, entry, batch, done)
        except _MovedError:
            log.warning("erasure raced a merge; resolving the subjects again", attempt=attempt + 1)
            continue
        except DBAPIError as exc:
            if not _retryable(exc):
                raise
            log.warning(
                "erasure deadlocked with a concurrent writer; retrying", attempt=attempt + 1
            )
            time.sleep(random.uniform(0.01, 0.1) * (attempt + 1))  # noqa: S311 - jitter only
            continue
        outcome.subjects += len(current)
        outcome.absorbed_ids += len(batch) - len(current)
        outcome.tombstones += done.tombstones
        outcome.identities.extend(done.identities)
        outcome.destinations.extend(destinations)
        outcome.retained.extend(done.retained)
        for mine, theirs in (
            (outcome.deleted, done.deleted),
            (outcome.unlinked, done.unlinked),
            (outcome.scrubbed, done.scrubbed),
        ):
            for table, n in theirs.items():
                _add(mine, table, n)
        return
    raise ErasureContentionError(
        "concurrent merges or writes kept conflicting with this erasure; its data keys are "
        "destroyed and no row was deleted: run it again to finish it"
    )


def _erase(
    runtime: Runtime,
    subject_ids: Sequence[str],
    how: _How,
) -> ErasureOutcome:
    outcome = ErasureOutcome()
    entries = live_entries(runtime)
    for start in range(0, len(subject_ids), BATCH):
        requested = list(dict.fromkeys(subject_ids[start : start + BATCH]))
        _erase_batch(runtime, requested, entries, how, outcome)
    return outcome


def erase_subject(
    *,
    runtime: Runtime,
    subject_id: str,
    tombstone: bool = True,
    clock: Clock = utcnow,
    record: Recorder | None = None,
) -> ErasureOutcome:
    """Erase one subject (a data-subject request)."""
    return erase_subjects(
        runtime=runtime, subject_ids=[subject_id], tombstone=tombstone, clock=clock, record=record
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
