"""Segment service: create and version segment definitions (their rules), list and show them.

Computing a segment's membership, diffing snapshots and listing members is
:mod:`cdp.segments.membership`.

Writers at the same moment (PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` serialises them): the
built-ins are inserted or left alone (``ON CONFLICT DO NOTHING`` on the name), so two first uses
both succeed; a name taken by a create between the check and the insert is a
:class:`~cdp.errors.ConflictError`, as a name taken before; an update locks the segment's row
before it reads the current version, so two updates take turns (versions n + 1 and n + 2).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from cdp.clock import Clock, utcnow
from cdp.db.conflicts import taken_name_is_conflict
from cdp.errors import ConflictError, NotFoundError
from cdp.runtime import Runtime
from cdp.segments.builtin import builtin_segments
from cdp.segments.models import (
    Segment,
    SegmentComputation,
    SegmentSnapshotMember,
    SegmentVersion,
)
from cdp.segments.rules import Clause, canonical_json, parse_rule
from cdp.segments.views import ComputationView, SegmentIn, SegmentVersionView, SegmentView
from cdp.traits.config import TraitsConfig, load_traits_config

seg_t = Segment.__table__  # type: ignore[attr-defined]
ver_t = SegmentVersion.__table__  # type: ignore[attr-defined]
comp_t = SegmentComputation.__table__  # type: ignore[attr-defined]
snap_t = SegmentSnapshotMember.__table__  # type: ignore[attr-defined]


def traits_config(runtime: Runtime, config: TraitsConfig | None) -> TraitsConfig:
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
    if_absent: bool = False,
) -> None:
    """Insert the segment at version 1 (``if_absent``: nothing when the name exists, also
    when another transaction inserts it meanwhile)."""
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(seg_t)
    values = insert.values(
        name=name,
        description=description,
        builtin=builtin,
        current_version=1,
        created_at=now,
        updated_at=now,
    )
    if if_absent:
        values = values.on_conflict_do_nothing(index_elements=["name"])
    seg_id = conn.execute(values.returning(seg_t.c.id)).scalar()
    if seg_id is None:  # the name exists: left alone
        return
    conn.execute(
        sa.insert(ver_t).values(
            segment_id=seg_id, version=1, rule=rule, created_at=now, created_by=actor[:64]
        )
    )


def ensure_builtins(conn: sa.Connection, *, cfg: TraitsConfig, now: datetime) -> None:
    """Install the built-in segments that are missing (an edited one is left alone; one that
    another transaction installs meanwhile too)."""
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
                if_absent=True,
            )


def segment_row(conn: sa.Connection, name: str, *, lock: bool = False) -> sa.Row[Any]:
    """The segment's row (``lock``: held ``FOR UPDATE`` to the end of the transaction, on
    PostgreSQL; SQLite's writer holds the database already)."""
    query = sa.select(seg_t).where(seg_t.c.name == name)
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFoundError("segment not found")
    return row


def rule_of(conn: sa.Connection, seg_id: int, version: int) -> str:
    return str(
        conn.execute(
            sa.select(ver_t.c.rule).where(ver_t.c.segment_id == seg_id, ver_t.c.version == version)
        ).scalar_one()
    )


def last_computation(conn: sa.Connection, seg_id: int) -> sa.Row[Any] | None:
    return conn.execute(
        sa.select(comp_t).where(comp_t.c.segment_id == seg_id).order_by(comp_t.c.id.desc()).limit(1)
    ).first()


def comp_view(row: sa.Row[Any] | None) -> ComputationView | None:
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
        rule=json.loads(rule_of(conn, row.id, row.current_version)),
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_computation=comp_view(last_computation(conn, row.id)),
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
    cfg = traits_config(runtime, config)
    canon = canonical_json(parse(cfg, data.rule))
    now = clock()
    with runtime.data_engine.begin() as conn:
        ensure_builtins(conn, cfg=cfg, now=now)
        taken = "a segment with this name exists; update it instead"
        if conn.execute(sa.select(seg_t.c.id).where(seg_t.c.name == data.name)).first():
            raise ConflictError(taken)
        # On PostgreSQL a create of the same name can pass the check at the same time; the
        # name's unique index refuses the later insert.
        with taken_name_is_conflict(taken):
            _insert(
                conn,
                name=data.name,
                description=data.description or "",
                rule=canon,
                builtin=False,
                actor=actor,
                now=now,
            )
        return _view(conn, segment_row(conn, data.name))


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
    cfg = traits_config(runtime, config)
    canon = canonical_json(parse(cfg, data.rule))
    now = clock()
    with runtime.data_engine.begin() as conn:
        ensure_builtins(conn, cfg=cfg, now=now)
        # Locked before the current version is read: a concurrent update waits for this one's
        # commit, then reads the version it wrote (instead of both writing the same number).
        row = segment_row(conn, data.name, lock=True)
        description = row.description if data.description is None else data.description
        current = rule_of(conn, row.id, row.current_version)
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
        return _view(conn, segment_row(conn, data.name))


def list_segments(
    *, runtime: Runtime, clock: Clock = utcnow, config: TraitsConfig | None = None
) -> list[SegmentView]:
    cfg = traits_config(runtime, config)
    with runtime.data_engine.begin() as conn:
        ensure_builtins(conn, cfg=cfg, now=clock())
        rows = conn.execute(sa.select(seg_t).order_by(seg_t.c.name)).all()
        return [_view(conn, r) for r in rows]


def get_segment(
    *, runtime: Runtime, name: str, clock: Clock = utcnow, config: TraitsConfig | None = None
) -> SegmentView:
    cfg = traits_config(runtime, config)
    with runtime.data_engine.begin() as conn:
        ensure_builtins(conn, cfg=cfg, now=clock())
        return _view(conn, segment_row(conn, name), with_versions=True)
