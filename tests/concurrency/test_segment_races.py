"""Segment writes at the same moment on PostgreSQL: never an internal error (HTTP 500).

* two first uses install the built-in segments at once: both succeed, each built-in once;
* two creators of the same name: one gets it, the other a conflict (409);
* two updates of one segment: they take turns (the row is locked), versions 2 and 3.

Each race holds both threads, with real connections, just after the read the unguarded code
decided on, until both made it (or, where the fix makes one wait for the other's lock, until a
short timeout)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from cdp.runtime import Runtime
from cdp.segments import service
from cdp.segments.builtin import builtin_segments
from cdp.segments.models import Segment, SegmentVersion
from cdp.segments.views import SegmentIn
from cdp.traits.config import TraitsConfig
from tests.concurrency.races import race
from tests.conftest import CdpEnv

seg_t = Segment.__table__  # type: ignore[attr-defined]
ver_t = SegmentVersion.__table__  # type: ignore[attr-defined]


def _postgres_only(rt: Runtime) -> None:
    if rt.data_engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers (BEGIN IMMEDIATE): the reads cannot interleave")


def _versions(rt: Runtime) -> dict[str, list[int]]:
    with rt.data_engine.connect() as conn:
        rows = conn.execute(
            sa.select(seg_t.c.name, ver_t.c.version)
            .join(ver_t, ver_t.c.segment_id == seg_t.c.id)
            .order_by(seg_t.c.name, ver_t.c.version)
        ).all()
    out: dict[str, list[int]] = {}
    for name, version in rows:
        out.setdefault(name, []).append(version)
    return out


def test_two_first_uses_install_the_builtins_once(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    _postgres_only(rt)

    def names_read(sql: str) -> bool:
        return sql.startswith("SELECT segments.name FROM segments")

    outcomes = race(rt, names_read, [lambda: service.list_segments(runtime=rt)] * 2, wait=10)
    assert outcomes == ["ok", "ok"]
    builtins = builtin_segments(TraitsConfig())
    assert _versions(rt) == {name: [1] for name in builtins}


def test_two_creators_of_one_name_get_it_and_a_conflict(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    _postgres_only(rt)
    service.list_segments(runtime=rt)  # the built-ins are in place

    def name_checked(sql: str) -> bool:
        return sql.startswith("SELECT segments.id FROM segments WHERE segments.name =")

    def create(value: int) -> Callable[[], Any]:
        rule = {"trait": {"name": "orders", "op": "ge", "value": value}}
        data = SegmentIn(name="racers", rule=rule)
        return lambda: service.create_segment(runtime=rt, data=data, actor="t")

    outcomes = race(rt, name_checked, [create(1), create(2)], wait=10)
    assert outcomes == ["conflict", "ok"]
    assert _versions(rt)["racers"] == [1]


def test_two_updates_of_one_segment_take_turns(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    _postgres_only(rt)
    first = {"trait": {"name": "orders", "op": "ge", "value": 1}}
    service.create_segment(runtime=rt, data=SegmentIn(name="turns", rule=first), actor="t")

    def rule_read(sql: str) -> bool:
        return sql.startswith("SELECT segment_versions.rule FROM segment_versions")

    def update(value: int) -> Callable[[], Any]:
        rule = {"trait": {"name": "orders", "op": "ge", "value": value}}
        data = SegmentIn(name="turns", rule=rule)
        return lambda: service.update_segment(runtime=rt, data=data, actor="t")

    # Unguarded, both read version 1 and both write a version 2. Locked, the second waits for
    # the first's commit (so the first is held only until the short timeout) and writes 3.
    outcomes = race(rt, rule_read, [update(2), update(3)], wait=3)
    assert outcomes == ["ok", "ok"]
    assert _versions(rt)["turns"] == [1, 2, 3]
    shown = service.get_segment(runtime=rt, name="turns")
    assert shown.version == 3
    assert shown.versions is not None
    assert {v.rule["trait"]["value"] for v in shown.versions[1:]} == {2, 3}
