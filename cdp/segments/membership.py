"""Segment membership: compute a segment into a snapshot, diff snapshots, list members.

Computing a segment is one INSERT ... SELECT of the compiled rule into a new snapshot, then
set-based counts of who joined and who left since the previous snapshot. Only the last
``keep_snapshots`` snapshots per segment keep their member rows; the counts stay forever.
Reading members or a diff is an audited read (:data:`MEMBERSHIP`).
"""

from __future__ import annotations

import json

import sqlalchemy as sa

from cdp.access.context import AccessContext
from cdp.audit.service import audited_read
from cdp.clock import Clock, utcnow
from cdp.errors import InvalidInputError, NotFoundError
from cdp.runtime import Runtime
from cdp.segments.compiler import compile_rule
from cdp.segments.rules import Clause
from cdp.segments.service import (
    comp_t,
    comp_view,
    ensure_builtins,
    last_computation,
    parse,
    rule_of,
    segment_row,
    snap_t,
    traits_config,
)
from cdp.segments.views import ComputationView, DiffView, MembersPage
from cdp.traits.config import TraitsConfig

MEMBERSHIP = "segment_membership"


def _count_missing(conn: sa.Connection, a: int, b: int | None) -> int:
    """How many members of snapshot ``a`` are not in snapshot ``b``."""
    other = snap_t.alias("other")
    query = sa.select(sa.func.count()).select_from(snap_t).where(snap_t.c.computation_id == a)
    if b is not None:
        query = query.where(
            ~sa.exists().where(
                other.c.computation_id == b, other.c.subject_id == snap_t.c.subject_id
            )
        )
    return int(conn.execute(query).scalar_one())


def _stored_rule(cfg: TraitsConfig, text: str) -> Clause:
    """The stored rule parsed again; InvalidInputError when today's checks refuse it (a rule
    stored before a check existed, or a tier the configuration no longer has)."""
    try:
        return parse(cfg, json.loads(text))
    except InvalidInputError as exc:
        raise InvalidInputError(
            f"the segment's stored rule is not valid now ({exc}); update the segment",
            field=exc.field,
        ) from None


def compute_segment(
    *, runtime: Runtime, name: str, clock: Clock = utcnow, config: TraitsConfig | None = None
) -> ComputationView:
    """Evaluate the current rule into a new snapshot; count adds and removes since the last."""
    cfg = traits_config(runtime, config)
    now = clock()
    with runtime.data_engine.begin() as conn:
        ensure_builtins(conn, cfg=cfg, now=now)
        seg = segment_row(conn, name)
        rule = _stored_rule(cfg, rule_of(conn, seg.id, seg.current_version))
        previous = last_computation(conn, seg.id)
        comp_id = conn.execute(
            sa.insert(comp_t)
            .values(
                segment_id=seg.id,
                version=seg.current_version,
                computed_at=now,
                member_count=0,
                added_count=0,
                removed_count=0,
                previous_id=previous.id if previous is not None else None,
            )
            .returning(comp_t.c.id)
        ).scalar_one()
        members = compile_rule(rule, now=now).subquery("members")
        conn.execute(
            sa.insert(snap_t).from_select(
                ["computation_id", "subject_id"],
                sa.select(sa.literal(comp_id), members.c.subject_id),
            )
        )
        prev_id = previous.id if previous is not None else None
        counts = {
            "member_count": _count_missing(conn, comp_id, None),
            "added_count": _count_missing(conn, comp_id, prev_id),
            "removed_count": _count_missing(conn, prev_id, comp_id) if prev_id else 0,
        }
        conn.execute(sa.update(comp_t).where(comp_t.c.id == comp_id).values(**counts))
        _prune(conn, seg.id, cfg.segments.keep_snapshots)
        row = conn.execute(sa.select(comp_t).where(comp_t.c.id == comp_id)).one()
    view = comp_view(row)
    assert view is not None
    return view


def _prune(conn: sa.Connection, seg_id: int, keep: int) -> None:
    kept = (
        sa.select(comp_t.c.id)
        .where(comp_t.c.segment_id == seg_id)
        .order_by(comp_t.c.id.desc())
        .limit(keep)
    )
    old = sa.select(comp_t.c.id).where(comp_t.c.segment_id == seg_id, comp_t.c.id.not_in(kept))
    conn.execute(sa.delete(snap_t).where(snap_t.c.computation_id.in_(old)))


def _has_snapshot(conn: sa.Connection, comp_id: int) -> bool:
    q = sa.select(sa.literal(1)).where(snap_t.c.computation_id == comp_id).limit(1)
    row = conn.execute(sa.select(comp_t.c.member_count).where(comp_t.c.id == comp_id)).first()
    return row is not None and (row[0] == 0 or conn.execute(q).first() is not None)


def _ids_missing(conn: sa.Connection, a: int, b: int | None, limit: int) -> list[str]:
    other = snap_t.alias("other")
    query = sa.select(snap_t.c.subject_id).where(snap_t.c.computation_id == a)
    if b is not None:
        query = query.where(
            ~sa.exists().where(
                other.c.computation_id == b, other.c.subject_id == snap_t.c.subject_id
            )
        )
    return list(conn.execute(query.order_by(snap_t.c.subject_id).limit(limit)).scalars())


def diff_segment(
    *,
    runtime: Runtime,
    ctx: AccessContext,
    name: str,
    from_id: int | None = None,
    to_id: int | None = None,
    limit: int = 1000,
) -> DiffView:
    """Adds and removes between two kept snapshots: ``to_id`` defaults to the last computation,
    ``from_id`` to the computation before ``to_id``. The ids returned are recorded in the audit
    log with the read."""
    with audited_read(runtime=runtime, ctx=ctx, action="read", resource="segments") as scope:
        conn = scope.conn
        seg = segment_row(conn, name)
        if to_id is None:
            to = last_computation(conn, seg.id)
            if to is None:
                raise NotFoundError("segment not computed yet")
        else:
            to = conn.execute(
                sa.select(comp_t).where(comp_t.c.id == to_id, comp_t.c.segment_id == seg.id)
            ).first()
            if to is None:
                raise NotFoundError("computation not found for this segment")
        to_id = int(to.id)
        if from_id is None:
            from_id = to.previous_id
        for cid in (from_id, to_id):
            if cid is None:
                continue
            owner = conn.execute(sa.select(comp_t.c.segment_id).where(comp_t.c.id == cid)).first()
            if owner is None or owner[0] != seg.id:
                raise NotFoundError("computation not found for this segment")
            if not _has_snapshot(conn, cid):
                raise InvalidInputError("that snapshot was pruned", field="computation")
        assert to_id is not None
        added_n = _count_missing(conn, to_id, from_id)
        removed_n = _count_missing(conn, from_id, to_id) if from_id is not None else 0
        added = _ids_missing(conn, to_id, from_id, limit)
        removed = _ids_missing(conn, from_id, to_id, limit) if from_id is not None else []
        scope.returned(subject_ids=[*added, *removed], fields=[MEMBERSHIP])
    return DiffView(
        segment=name,
        from_computation=from_id,
        to_computation=to_id,
        added=added,
        removed=removed,
        added_count=added_n,
        removed_count=removed_n,
        truncated=added_n > len(added) or removed_n > len(removed),
    )


def members(
    *,
    runtime: Runtime,
    ctx: AccessContext,
    name: str,
    page_size: int = 100,
    cursor: str | None = None,
    config: TraitsConfig | None = None,
) -> MembersPage:
    """A page of the last snapshot's members, ordered by id; ``cursor`` = last id seen. The
    ids returned are recorded in the audit log with the read."""
    cfg = traits_config(runtime, config)
    if not 1 <= page_size <= cfg.segments.max_page_size:
        raise InvalidInputError(
            f"page_size must be 1 to {cfg.segments.max_page_size}", field="page_size"
        )
    with audited_read(runtime=runtime, ctx=ctx, action="read", resource="segments") as scope:
        conn = scope.conn
        seg = segment_row(conn, name)
        last = last_computation(conn, seg.id)
        if last is None:
            raise NotFoundError("segment not computed yet")
        query = sa.select(snap_t.c.subject_id).where(snap_t.c.computation_id == last.id)
        if cursor is not None:
            query = query.where(snap_t.c.subject_id > cursor)
        ids = list(conn.execute(query.order_by(snap_t.c.subject_id).limit(page_size + 1)).scalars())
        more = len(ids) > page_size
        ids = ids[:page_size]
        scope.returned(subject_ids=ids, fields=[MEMBERSHIP])
    return MembersPage(
        segment=name,
        computation=last.id,
        computed_at=last.computed_at,
        member_count=last.member_count,
        subject_ids=ids,
        next_cursor=ids[-1] if more else None,
    )
