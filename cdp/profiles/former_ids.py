"""The ids a person had before merges: what a subject absorbed, directly or through ids it
absorbed (A merged into B, then B into C: C's former ids are B and A).

A merge moves the absorbed subject's rows to the survivor (:mod:`cdp.profiles.merge`), but not
everything that names a subject can move: the audit log and its subject index are append-only
(GDPR art. 5(2)) and keep naming the id a record was written under, and a row written under the
old id after the merge (an export that staged the person before it) stays there too. Whatever
serves the person's access rights (the access package, the subject access report) reads under
every id the person had, from ``subject_merges``.

``subject_merges`` is kept flat by the merge (the rows of ids the absorbed subject had absorbed
are pointed at the new survivor), but it is followed transitively here all the same, so that a
chain left by any earlier writer is found whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cdp.profiles.models import SubjectMerge

MERGES: Final = SubjectMerge.__table__  # type: ignore[attr-defined]
_CHUNK: Final = 500


@dataclass(frozen=True, slots=True)
class FormerId:
    """One id the person had, as ``subject_merges`` records its merge."""

    subject_id: str
    merged_into: str
    linked_by: str
    merged_at: datetime


def _walk(conn: Connection, roots: list[str]) -> dict[str, FormerId]:
    """Every id absorbed, transitively, by any of ``roots`` (the roots themselves left out)."""
    found: dict[str, FormerId] = {}
    skip = set(roots)
    frontier = list(dict.fromkeys(roots))
    while frontier:
        step: list[str] = []
        for start in range(0, len(frontier), _CHUNK):
            rows = conn.execute(
                sa.select(
                    MERGES.c.merged_id,
                    MERGES.c.survivor_id,
                    MERGES.c.linked_by,
                    MERGES.c.merged_at,
                ).where(MERGES.c.survivor_id.in_(frontier[start : start + _CHUNK]))
            )
            for merged, survivor, linked_by, at in rows:
                if merged in skip or merged in found:
                    continue
                found[merged] = FormerId(merged, survivor, linked_by, at)
                step.append(merged)
        frontier = step
    return found


def former_ids(conn: Connection, subject_id: str) -> list[FormerId]:
    """Every id ``subject_id`` absorbed, transitively, in the order of their merges."""
    found = _walk(conn, [subject_id])
    return sorted(found.values(), key=lambda f: (f.merged_at, f.subject_id))


def absorbed_ids(conn: Connection, subject_ids: list[str]) -> list[str]:
    """Every id any of ``subject_ids`` absorbed, transitively (not the given ids themselves):
    what an erasure of them must also clear (rows left under an id the person had)."""
    return sorted(_walk(conn, subject_ids))


def person_ids(conn: Connection, subject_id: str) -> list[str]:
    """``subject_id`` first, then every id it absorbed (:func:`former_ids`)."""
    return [subject_id, *(f.subject_id for f in former_ids(conn, subject_id))]


def current_ids(conn: Connection, subject_ids: list[str]) -> dict[str, str]:
    """Each of ``subject_ids`` mapped to the subject that holds it now: itself, or the survivor
    that absorbed it (followed transitively, a cycle left by a broken writer stops the walk).
    An erased survivor's merge rows are gone with it: its absorbed ids map to themselves."""
    out = {s: s for s in subject_ids}
    pending = set(subject_ids)
    seen: dict[str, set[str]] = {s: {s} for s in subject_ids}
    while pending:
        heads = sorted({out[s] for s in pending})
        moved: dict[str, str] = {}
        for start in range(0, len(heads), _CHUNK):
            rows = conn.execute(
                sa.select(MERGES.c.merged_id, MERGES.c.survivor_id).where(
                    MERGES.c.merged_id.in_(heads[start : start + _CHUNK])
                )
            )
            moved.update({merged: survivor for merged, survivor in rows})
        step = set()
        for s in pending:
            nxt = moved.get(out[s])
            if nxt is not None and nxt not in seen[s]:
                seen[s].add(nxt)
                out[s] = nxt
                step.add(s)
        pending = step
    return out
