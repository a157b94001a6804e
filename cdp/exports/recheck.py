"""Consent and restriction checked again for every chunk of adds, just before it is sent.

Staging (:mod:`cdp.exports.staging`) judges every member once, at the consent snapshot time; a
large export, or a webhook with retries, then takes minutes to send. A withdrawal (``POST
/v1/consent``, the CLI, Segment preferences, GPC, an objection, an identity merge's withdrawal)
or a restriction committed meanwhile must still stop that person's data. Re-running the
eligibility join on every chunk would cost about what staging costs; instead:

- just before staging, :func:`take_marks` notes the highest ledger entry id and restriction id
  (on PostgreSQL under a ``SHARE`` lock of both tables, held for that one read: it waits for the
  transactions inserting into them and so no id below the mark can commit later; on SQLite,
  writers are serialised anyway). Every entry staging could not see has an id above the mark;
- per chunk, :meth:`Recheck.late` reads the entries above the marks (the destination's purpose
  and ``analytics``, whose withdrawal — an upheld objection to profiling — takes the subject out
  of every segment; by the primary key, usually none) and re-judges only those of the chunk's
  subjects they name, with the same SQL conditions staging used. The subjects no longer
  eligible are marked in staging (state ``no_consent`` or ``restricted``, action ``none``): they
  are neither sent, nor in the recipients ledger, nor in the sync state, and the manifest counts
  them apart
  (``excluded_consent_late``, ``excluded_restriction_late``).

The pipeline asks twice a chunk: before decrypting it (nothing of a subject found then is
decrypted) and again inside the transaction that writes the chunk's audit record and ledger rows
(a subject found then was decrypted in memory: the audit record names it, as it names every
decryption, but no row of it goes out and it is not in the ledger). What is left is documented in
``docs/exports.md`` ("Consent at send time").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cdp.consent.ledger_state import granted_condition
from cdp.consent.models import ConsentEvent
from cdp.consent.purposes import get_purpose
from cdp.exports.staging import STAGING
from cdp.privacy.models import Restriction
from cdp.privacy.restriction import not_restricted_condition
from cdp.traits.eligibility import PROFILING_PURPOSE, profiling_allowed

CONSENT = cast(sa.Table, ConsentEvent.__table__)  # type: ignore[attr-defined]
RESTRICTIONS = cast(sa.Table, Restriction.__table__)  # type: ignore[attr-defined]

#: The states a late check gives; the manifest counts each apart.
LATE_CONSENT = "no_consent"
LATE_RESTRICTION = "restricted"


@dataclass(frozen=True, slots=True)
class Marks:
    """The highest consent-ledger entry id and restriction id when staging began."""

    consent: int
    restriction: int


def take_marks(conn: Connection) -> Marks:
    """Read the marks in ``conn``'s own short transaction, just before the staging one."""
    if conn.dialect.name == "postgresql":
        # waits for the transactions inserting into either table, and keeps new inserts out for
        # the two reads: every id at or below a mark has committed (or rolled back) by then
        conn.execute(sa.text("LOCK TABLE consent_events, restrictions IN SHARE MODE"))
    consent = conn.execute(sa.select(sa.func.max(CONSENT.c.id))).scalar()
    restriction = conn.execute(sa.select(sa.func.max(RESTRICTIONS.c.id))).scalar()
    return Marks(int(consent or 0), int(restriction or 0))


class Recheck:
    """The late check of one export's adds (see the module doc)."""

    def __init__(self, *, export_id: str, purpose: str, marks: Marks) -> None:
        self.export_id = export_id
        self.marks = marks
        # the destination's purpose (when a withdrawal stops it) and profiling (an upheld
        # objection takes the subject out of every segment), as staging judges them
        purposes = [PROFILING_PURPOSE]
        if purpose != PROFILING_PURPOSE and get_purpose(purpose).withdrawable:
            purposes.append(purpose)
        restricted = sa.select(RESTRICTIONS.c.subject_id).where(
            RESTRICTIONS.c.id > marks.restriction, RESTRICTIONS.c.lifted_at.is_(None)
        )
        self._touched: sa.CompoundSelect[Any] = (
            sa.select(CONSENT.c.subject_id)
            .where(CONSENT.c.id > marks.consent, CONSENT.c.purpose.in_(purposes))
            .union(restricted)
        )
        sid = STAGING.c.subject_id
        self._state = sa.case(
            (
                ~sa.and_(granted_condition(purpose, sid), profiling_allowed(sid)),
                sa.literal(LATE_CONSENT),
            ),
            (~not_restricted_condition(sid), sa.literal(LATE_RESTRICTION)),
            else_=sa.literal("eligible"),
        )

    def late(self, conn: Connection, ids: Sequence[str]) -> dict[str, str]:
        """The subjects of ``ids`` staged as adds and no longer eligible, with their state now
        (a read: usually one look by primary key above each mark that finds nothing)."""
        touched = set(conn.execute(self._touched).scalars())
        if not touched:
            return {}
        suspects = sorted(touched.intersection(ids))
        if not suspects:
            return {}
        judged = conn.execute(
            sa.select(STAGING.c.subject_id, self._state).where(
                STAGING.c.export_id == self.export_id,
                STAGING.c.action == "add",
                STAGING.c.subject_id.in_(suspects),
            )
        ).all()
        return {sid: state for sid, state in judged if state != "eligible"}

    def drop(self, engine: sa.Engine, ids: list[str], late: dict[str, str]) -> list[str]:
        """``ids`` less the subjects no longer eligible (a short read; those found are marked
        in a transaction of their own and added to ``late``)."""
        with engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
            found = self.late(conn, ids)
        if not found:
            return ids
        with engine.begin() as conn:
            self.mark(conn, found)
        late.update(found)
        return [i for i in ids if i not in found]

    def mark(self, conn: Connection, late: dict[str, str]) -> None:
        """Record ``late`` in staging: the state found, action ``none`` (not sent, not in the
        ledger nor the sync state)."""
        if not late:
            return
        stmt = (
            sa.update(STAGING)
            .where(
                STAGING.c.export_id == self.export_id, STAGING.c.subject_id == sa.bindparam("sid")
            )
            .values(state=sa.bindparam("new_state"), action="none")
        )
        conn.execute(stmt, [{"sid": s, "new_state": st} for s, st in late.items()])


def without(
    drop: dict[str, str],
    out_ids: list[str],
    rows: list[list[str]],
    unusable: list[str],
    profiles: dict[str, Any],
) -> tuple[list[str], list[list[str]], list[str], dict[str, Any]]:
    """A chunk's rows, unusable ids and decrypted profiles less the subjects in ``drop``."""
    pairs = [(i, r) for i, r in zip(out_ids, rows, strict=True) if i not in drop]
    return (
        [i for i, _ in pairs],
        [r for _, r in pairs],
        [i for i in unusable if i not in drop],
        {k: v for k, v in profiles.items() if k not in drop},
    )
