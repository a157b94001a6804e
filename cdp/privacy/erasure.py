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
3. In one data transaction: wait for the trait recompute steps in progress and hold new ones
   off (:func:`cdp.traits.recompute_lock.exclude_recomputes`), lock the subject rows and check
   that no merge moved an id since step 1 (if one did, roll back and start again from step 1, a
   few times at most); write tombstones (identity tokens only, so a late or replayed record
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

Retention uses the same path without tombstones (an inactive customer who comes back is welcome)
as a *judged* erasure (``still``): the subjects are judged again, resolved without following
merges and recorded inside the data transaction of step 3, and step 2 comes after it commits.
Erasure is idempotent: erasing an erased subject changes nothing and reports zero rows.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from cdp.clock import Clock, utcnow
from cdp.consent.triggers import ledger_unlocked
from cdp.crypto.normalize import IdentityKind
from cdp.db.models import Subject, Tombstone
from cdp.errors import ErasureContentionError
from cdp.logging import get_logger
from cdp.privacy.erasure_lock import erasure_guard
from cdp.privacy.erasure_steps import (
    add_count,
    apply_entry,
    clear_wals,
    live_entries,
    recipients_of,
    secure_delete,
)
from cdp.privacy.registry import SubjectTable
from cdp.privacy.tombstones import insert_tombstones, tombstone_rows
from cdp.profiles.former_ids import absorbed_ids, current_ids
from cdp.runtime import Runtime
from cdp.traits.recompute_lock import exclude_recomputes

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
    export_files_kept_days: int | None = None
    """``CDP_EXPORT_FILE_DAYS`` when a file destination (not a webhook) received the person: the
    files exported before the erasure still hold them until retention deletes them, that many
    days after their export (shared with everyone else exported with them, they are not
    rewritten)."""
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
            "export_files_kept_days": self.export_files_kept_days,
            "wal_cleared": dict(self.wal_cleared),
        }


Recorder = Callable[[list[str], Connection | None], object]
"""Writes the caller's audit record of an erasure, given the ids about to be erased: the
subjects that hold the ids asked for now, then every id they absorbed. Without a connection it
commits the record itself (a request's erasure: before the keys are destroyed, once per batch,
and again if a merge changed the ids meanwhile); with one it writes into that transaction, the
one that deletes the rows (a judged erasure, below)."""

Judge = Callable[[Connection, list[str]], list[str]]
"""Which of the given subjects are still to be erased, decided in the erasure's data transaction
with their rows locked (retention: those still inactive and unprotected)."""


def erase_subjects(
    *,
    runtime: Runtime,
    subject_ids: Sequence[str],
    tombstone: bool = True,
    reason: str = "erasure",
    clock: Clock = utcnow,
    clear_wal: bool = True,
    record: Recorder | None = None,
    still: Judge | None = None,
) -> ErasureOutcome:
    """Erase ``subject_ids`` everywhere (see the module doc); return what was done.

    ``clear_wal=False``: leave the SQLite WALs to the caller, which erases in several calls and
    clears them once at the end (:func:`clear_wals`; retention does). ``record``: see
    :data:`Recorder` (an error it raises stops the erasure before the keys of its ids go).

    ``still``: a *judged* erasure (retention). The subjects are judged again by ``still`` in the
    data transaction, with their rows locked, so nothing that commits before the erasure can
    change the decision after it was taken: an order, a restriction, a privacy request or a
    merge bringing in someone active. An id merged away is not followed to its survivor (a
    subject nobody judged). The keys are destroyed once the rows are gone (a crash in between
    leaves orphaned keys, which ``cdp keys orphans --destroy`` finds)."""
    how = _How(tombstone, reason, clock, record, still)
    with erasure_guard(runtime):
        outcome = _erase(runtime, subject_ids, how)
        if any(d.get("kind") != "webhook" for d in outcome.destinations):
            outcome.export_files_kept_days = runtime.settings.export_file_days
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
    still: Judge | None


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
    merge is left out instead of followed to its survivor."""
    held = current_ids(conn, requested)
    if not follow_merges:
        held = {s: c for s, c in held.items() if c == s}
    current = list(dict.fromkeys(held.values()))
    return current, current + [i for i in absorbed_ids(conn, current) if i not in current]


def _lock_subjects(conn: Connection, subject_ids: list[str]) -> None:
    """Lock the subject rows (PostgreSQL: ``FOR UPDATE``, in id order like a merge's
    :func:`cdp.profiles.merge._lock_pair`, so no merge of them runs until the erasure commits,
    and rows that reference them wait on their foreign-key check; SQLite: the erasure's
    ``BEGIN IMMEDIATE`` holds the writer lock already)."""
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
    it was not given yet. A judged erasure (``how.still``) resolves, judges and records inside
    the data transaction and destroys the keys after it commits."""
    follow = how.still is None
    recorded: list[str] | None = None
    for attempt in range(ATTEMPTS):
        if follow:
            with runtime.data_engine.connect() as conn:
                current, batch = _person(conn, requested)
                destinations = recipients_of(conn, batch)
            if how.record is not None and batch != recorded:
                how.record(batch, None)
                recorded = batch
            outcome.keys_shredded += runtime.vault.shred(batch)
        done = ErasureOutcome()
        try:
            with runtime.data_engine.begin() as conn, secure_delete(conn):
                if not follow:
                    current, batch = _person(conn, requested, follow_merges=False)
                exclude_recomputes(conn)  # before any subject row (cdp.traits.recompute_lock)
                _lock_subjects(conn, current)
                if _person(conn, requested, follow) != (current, batch):
                    raise _MovedError
                if how.still is not None:
                    current, batch = _person(conn, how.still(conn, current), follow_merges=False)
                    if not batch:
                        return
                    destinations = recipients_of(conn, batch)
                    if how.record is not None:
                        how.record(batch, conn)
                if how.tombstone:
                    rows = tombstone_rows(conn, batch, how.clock())
                    done.tombstones = insert_tombstones(conn, rows)
                    done.identities = [(r["kind"], r["token"]) for r in rows]
                with ledger_unlocked(conn, reason=how.reason):
                    for entry in entries:
                        apply_entry(conn, entry, batch, done)
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
        if not follow:
            outcome.keys_shredded += runtime.vault.shred(batch)
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
                add_count(mine, table, n)
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
