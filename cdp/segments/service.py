"""Segment service: create and version rules, compute membership snapshots, diff, list members.

Computing a segment is one INSERT ... SELECT of the compiled rule into a new snapshot, then
set-based counts of who joined and who left since the previous snapshot. Only the last
``keep_snapshots`` snapshots per segment keep their member rows; the counts stay forever.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from cdp.access.context import AccessContext
from cdp.audit.service import audited_read
from cdp.clock import Clock, utcnow
from cdp.errors import ConflictError, InvalidInputError, NotFoundError
from cdp.runtime import Runtime
from cdp.segments.builtin import builtin_segments
from cdp.segments.compiler import compile_rule
from cdp.segments.models import (
    Segment,
    SegmentComputation,
    SegmentSnapshotMember,
    SegmentVersion,
)
from cdp.segments.rules import Clause, canonical_json, parse_rule
from cdp.segments.views import (
    ComputationView,
    DiffView,
    MembersPage,
    SegmentIn,
    SegmentVersionView,
    SegmentView,
)
from cdp.traits.config import TraitsConfig, load_traits_config

MEMBERSHIP = "segment_membership"
seg_t = Segment.__table__  # type: ignore[attr-defined]
ver_t = SegmentVersion.__table__  # type: ignore[attr-defined]
comp_t = SegmentComputation.__table__  # type: ignore[attr-defined]
snap_t = SegmentSnapshotMember.__table__  # type: ignore[attr-defined]


def _cfg(runtime: Runtime, config: TraitsConfig | None) -> TraitsConfig:
    return config or load_traits_config(runtime.settings)


def _tiers(cfg: TraitsConfig) -> tuple[str, ...]:
    return tuple(t.name for t in cfg.loyalty.tiers)


def parse(cfg: TraitsConfig, rule: Any) -> Clause:
    return parse_rule(rule, tiers=_tiers(cfg))


def _insert(
    conn: sa.Connection,
    *,
    name: str,
    description: str,
    rule: str,
    builtin: bool,
    actor: str,
    now: datetime,
) -> None:
    seg_id = conn.execute(
        sa.insert(seg_t)
        .values(
            name=name,
            description=description,
            builtin=builtin,
            current_version=1,
            created_at=now,
            updated_at=now,
        )
        .returning(seg_t.c.id)
    ).scalar_one()
    conn.execute(
        sa.insert(ver_t).values(
            segment_id=seg_id, version=1, rule=rule, created_at=now, created_by=actor[:64]
        )
    )


def ensure_builtins(conn: sa.Connection, *, cfg: TraitsConfig, now: datetime) -> None:
    """Install the built-in segments that are missing (an edited one is left alone)."""
    present = set(conn.execute(sa.select(seg_t.c.name)).scalars())
    for name, (description, rule) in builtin_segments(cfg).items():
        if name not in present:
            canon = canonical_json(parse(cfg, rule))
            _insert(
                conn,
                name=name,
                description=description,
                rule=canon,
                builtin=True,
                actor="builtin",
                now=now,
            )


def _segment_row(conn: sa.Connection, name: str) -> sa.Row[Any]:
    row = conn.execute(sa.select(seg_t).where(seg_t.c.name == name)).first()
    if row is None:
        raise NotFoundError("segment not found")
    return row


def _rule_of(conn: sa.Connection, seg_id: int, version: int) -> str:
    return str(
        conn.execute(
            sa.select(ver_t.c.rule).where(ver_t.c.segment_id == seg_id, ver_t.c.version == version)
        ).scalar_one()
    )


def _last_computation(conn: sa.Connection, seg_id: int) -> sa.Row[Any] | None:
    return conn.execute(
        sa.select(comp_t).where(comp_t.c.segment_id == seg_id).order_by(comp_t.c.id.desc()).limit(1)
    ).first()


def _comp_view(row: sa.Row[Any] | None) -> ComputationView | None:
    if row is None:
        return None
    return ComputationView(
        id=row.id,
        version=row.version,
        computed_at=row.computed_at,
        member_count=row.member_count,
        added_count=row.added_count,
        removed_count=row.removed_count,
    )


def _view(conn: sa.Connection, row: sa.Row[Any], *, with_versions: bool = False) -> SegmentView:
    versions = None
    if with_versions:
        versions = [
            SegmentVersionView(
                version=v.version,
                rule=json.loads(v.rule),
                created_at=v.created_at,
                created_by=v.created_by,
            )
            for v in conn.execute(
                sa.select(ver_t).where(ver_t.c.segment_id == row.id).order_by(ver_t.c.version)
            )
        ]
    return SegmentView(
        name=row.name,
        description=row.description,
        builtin=row.builtin,
        version=row.current_version,
        rule=json.loads(_rule_of(conn, row.id, row.current_version)),
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_computation=_comp_view(_last_computation(conn, row.id)),
        versions=versions,
    )


def create_segment(
    *,
    runtime: Runtime,
    data: SegmentIn,
    actor: str,
    clock: Clock = utcnow,
    config: TraitsConfig | None = None,
) -> SegmentView:
    """Store a new segment at version 1; ConflictError if the name is taken."""
    cfg = _cfg(runtime, config)
    canon = canonical_json(parse(cfg, data.rule))
    now = clock()
    with runtime.data_engine.begin() as conn:
        ensure_builtins(conn, cfg=cfg, now=now)
        if conn.execute(sa.select(seg_t.c.id).where(seg_t.c.name == data.name)).first():
            raise ConflictError("a segment with this name exists; update it instead")
        _insert(
            conn,
            name=data.name,
            description=data.description or "",
            rule=canon,
            builtin=False,
            actor=actor,
            now=now,
        )
        return _view(conn, _segment_row(conn, data.name))


def update_segment(
    *,
    runtime: Runtime,
    data: SegmentIn,
    actor: str,
    clock: Clock = utcnow,
    config: TraitsConfig | None = None,
) -> SegmentView:
    """Store a new version when the rule changed, and the description when one is given and
    differs (``None`` keeps the stored one); otherwise nothing."""
    cfg = _cfg(runtime, config)
    canon = canonical_json(parse(cfg, data.rule))
    now = clock()
    with runtime.data_engine.begin() as conn:
        ensure_builtins(conn, cfg=cfg, now=now)
        row = _segment_row(conn, data.name)
        description = row.description if data.description is None else data.description
        current = _rule_of(conn, row.id, row.current_version)
        if current != canon:
            version = row.current_version + 1
            conn.execute(
                sa.insert(ver_t).values(
                    segment_id=row.id,
                    version=version,
                    rule=canon,
                    created_at=now,
                    created_by=actor[:64],
                )
            )
            conn.execute(
                sa.update(seg_t)
                .where(seg_t.c.id == row.id)
                .values(current_version=version, updated_at=now, description=description)
            )
        elif description != row.description:
            conn.execute(
                sa.update(seg_t)
                .where(seg_t.c.id == row.id)
                .values(description=description, updated_at=now)
            )
        return _view(conn, _segment_row(conn, data.name))


def list_segments(
    *, runtime: Runtime, clock: Clock = utcnow, config: TraitsConfig | None = None
) -> list[SegmentView]:
    cfg = _cfg(runtime, config)
    with runtime.data_engine.begin() as conn:
        ensure_builtins(conn, cfg=cfg, now=clock())
        rows = conn.execute(sa.select(seg_t).order_by(seg_t.c.name)).all()
        return [_view(conn, r) for r in rows]


def get_segment(
    *, runtime: Runtime, name: str, clock: Clock = utcnow, config: TraitsConfig | None = None
) -> SegmentView:
    cfg = _cfg(runtime, config)
    with runtime.data_engine.begin() as conn:
        ensure_builtins(conn, cfg=cfg, now=clock())
        return _view(conn, _segment_row(conn, name), with_versions=True)


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
    cfg = _cfg(runtime, config)
    now = clock()
    with runtime.data_engine.begin() as conn:
        ensure_builtins(conn, cfg=cfg, now=now)
        seg = _segment_row(conn, name)
        rule = _stored_rule(cfg, _rule_of(conn, seg.id, seg.current_version))
        previous = _last_computation(conn, seg.id)
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
    view = _comp_view(row)
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
        seg = _segment_row(conn, name)
        if to_id is None:
            to = _last_computation(conn, seg.id)
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
    cfg = _cfg(runtime, config)
    if not 1 <= page_size <= cfg.segments.max_page_size:
        raise InvalidInputError(
            f"page_size must be 1 to {cfg.segments.max_page_size}", field="page_size"
        )
    with audited_read(runtime=runtime, ctx=ctx, action="read", resource="segments") as scope:
        conn = scope.conn
        seg = _segment_row(conn, name)
        last = _last_computation(conn, seg.id)
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
