"""Send-time membership, in SQL: who is in, who is out and why, and what changes at the
destination.

One ``INSERT ... SELECT`` writes every member of the freshly computed segment into
``export_staging`` with its *state*:

- ``no_consent``: the current consent state for the destination's purpose is not granted, or
  the subject's ``analytics`` purpose is withdrawn (an upheld objection to profiling: such a
  subject is in no segment, :mod:`cdp.traits.eligibility`);
- ``restricted``: consent granted, but processing is restricted (GDPR art. 18);
- ``no_data``: eligible, but none of the destination's fields is stored for the subject;
- ``eligible``: will be at the destination after this run.

and its *action*: ``add`` (send it: not in the sync state, or there unconfirmed — a batch
that may not have arrived), ``keep`` (confirmed there: incremental sync), ``remove`` (in the
sync state, confirmed or not, and no longer eligible), ``none``. Subjects the sync state holds
that left the segment are added with state ``left`` and action ``remove``. Consent and
restriction are the services' own SQL conditions (:mod:`cdp.consent.ledger_state`,
:mod:`cdp.privacy.restriction`), so the check is the same one every other part of cdp applies,
evaluated at send time. Python only ever sees the ids it has to decrypt, in chunks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cdp.consent.ledger_state import granted_condition
from cdp.exports.models import ExportStaging, SyncMember
from cdp.privacy.restriction import not_restricted_condition
from cdp.profiles.pii_records import has_any_field
from cdp.traits.eligibility import profiling_allowed

STAGING = cast(sa.Table, ExportStaging.__table__)  # type: ignore[attr-defined]
SYNC = cast(sa.Table, SyncMember.__table__)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class StagedCounts:
    """Counts straight from the staging rows."""

    members: int
    excluded_consent: int
    excluded_restriction: int
    no_data: int
    eligible: int
    to_add: int
    unchanged: int
    to_remove: int


def stage(
    conn: Connection,
    *,
    export_id: str,
    members: sa.Select[tuple[str]],
    purpose: str,
    fields: Sequence[str],
    destination_id: str,
    segment: str,
    full: bool,
) -> StagedCounts:
    """Write the staging rows of ``export_id`` and return their counts (one transaction)."""
    m = members.subquery("m")
    sid = m.c[0]
    has_data = has_any_field(sid, fields)
    state = sa.case(
        (
            ~sa.and_(granted_condition(purpose, sid), profiling_allowed(sid)),
            sa.literal("no_consent"),
        ),
        (~not_restricted_condition(sid), sa.literal("restricted")),
        (~has_data, sa.literal("no_data")),
        else_=sa.literal("eligible"),
    )
    # the subject's sync row: NULL (not there), confirmed or not (the destination may hold it)
    synced = (
        sa.select(SYNC.c.confirmed)
        .where(
            SYNC.c.destination_id == destination_id,
            SYNC.c.segment == segment,
            SYNC.c.subject_id == sid,
        )
        .scalar_subquery()
    )
    # state and action in one pass (no UPDATE rewriting every staged row and its index entry)
    states = sa.select(sid.label("subject_id"), state.label("state"), synced.label("synced"))
    st = states.distinct().subquery("st")
    eligible = st.c.state == "eligible"
    held = st.c.synced.is_not(None)
    kept = sa.false() if full else st.c.synced.is_(True)
    action = sa.case(
        (sa.and_(eligible, kept), sa.literal("keep")),
        (eligible, sa.literal("add")),  # not there, not confirmed, or a full run
        (held, sa.literal("remove")),  # confirmed or not: withdrawn all the same
        else_=sa.literal("none"),
    )
    select = sa.select(sa.literal(export_id), st.c.subject_id, st.c.state, action)
    conn.execute(
        sa.insert(STAGING).from_select(["export_id", "subject_id", "state", "action"], select)
    )
    staged = (
        sa.select(sa.literal(1))
        .where(STAGING.c.export_id == export_id, STAGING.c.subject_id == SYNC.c.subject_id)
        .exists()
    )
    left = sa.select(
        sa.literal(export_id), SYNC.c.subject_id, sa.literal("left"), sa.literal("remove")
    ).where(SYNC.c.destination_id == destination_id, SYNC.c.segment == segment, ~staged)
    conn.execute(
        sa.insert(STAGING).from_select(["export_id", "subject_id", "state", "action"], left)
    )
    return counts(conn, export_id=export_id)


def counts(conn: Connection, *, export_id: str) -> StagedCounts:
    """Tally the staging rows by state and action."""
    tally: dict[tuple[str, str], int] = {}
    for state, action, n in conn.execute(
        sa.select(STAGING.c.state, STAGING.c.action, sa.func.count())
        .where(STAGING.c.export_id == export_id)
        .group_by(STAGING.c.state, STAGING.c.action)
    ):
        tally[(state, action)] = int(n)

    def by_state(name: str) -> int:
        return sum(n for (s, _), n in tally.items() if s == name)

    def by_action(name: str) -> int:
        return sum(n for (_, a), n in tally.items() if a == name)

    return StagedCounts(
        members=sum(n for (s, _), n in tally.items() if s != "left"),
        excluded_consent=by_state("no_consent"),
        excluded_restriction=by_state("restricted"),
        no_data=by_state("no_data"),
        eligible=by_state("eligible"),
        to_add=by_action("add"),
        unchanged=by_action("keep"),
        to_remove=by_action("remove"),
    )


def iter_ids(engine: sa.Engine, *, export_id: str, action: str, chunk: int) -> Iterator[list[str]]:
    """The staged subject ids with ``action``, in id order, ``chunk`` at a time (keyset pages,
    each one short read so no long transaction holds SQLite; through the driver's cursor on
    SQLite and PostgreSQL: plain strings, no result rows)."""
    after = ""
    while True:
        with engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
            ids = _page(conn, export_id=export_id, action=action, after=after, chunk=chunk)
        if not ids:
            return
        yield ids
        after = ids[-1]


_PAGE = (
    sa.select(STAGING.c.subject_id)
    .where(
        STAGING.c.export_id == sa.bindparam("export_id"),
        STAGING.c.action == sa.bindparam("action"),
        STAGING.c.subject_id > sa.bindparam("after"),
    )
    .order_by(STAGING.c.subject_id)
    .limit(sa.bindparam("chunk"))
)


def _page(conn: Connection, *, export_id: str, action: str, after: str, chunk: int) -> list[str]:
    dialect = conn.dialect.name
    params = {"export_id": export_id, "action": action, "after": after, "chunk": chunk}
    if dialect not in ("sqlite", "postgresql"):
        return [r[0] for r in conn.execute(_PAGE, params)]
    mark = "?" if dialect == "sqlite" else "%s"
    cur: Any = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cur.execute(
            "SELECT subject_id FROM export_staging "  # noqa: S608 (placeholders only)
            f"WHERE export_id = {mark} AND action = {mark} AND subject_id > {mark} "
            f"ORDER BY subject_id LIMIT {mark}",
            (export_id, action, after, chunk),
        )
        return [r[0] for r in cur.fetchall()]
    finally:
        cur.close()


def set_action(
    conn: Connection, *, export_id: str, subject_ids: Sequence[str], action: str
) -> None:
    """Change the action of some staged subjects (skipped rows, failed deliveries)."""
    stmt = (
        sa.update(STAGING)
        .where(STAGING.c.export_id == export_id, STAGING.c.subject_id == sa.bindparam("sid"))
        .values(action=action)
    )
    for start in range(0, len(subject_ids), 1000):
        conn.execute(stmt, [{"sid": s} for s in subject_ids[start : start + 1000]])


def refuse_adds(conn: Connection, *, export_id: str) -> int:
    """The audience is below the minimum: every staged add not yet skipped or failed becomes
    ``refused`` (not sent, kept out of the sync state and the ledger). Returns how many."""
    result = conn.execute(
        sa.update(STAGING)
        .where(STAGING.c.export_id == export_id, STAGING.c.action == "add")
        .values(action="refused")
    )
    return int(result.rowcount)


def clear(conn: Connection, *, export_id: str) -> None:
    """Delete the staging rows of an export (it ended, one way or another)."""
    conn.execute(sa.delete(STAGING).where(STAGING.c.export_id == export_id))
