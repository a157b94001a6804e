"""Retention decides who is inactive, then erases them slice by slice; an erasure waits for every
running export (the erasure guard). Whatever commits in between — an order, a restriction, a merge
that brings an active customer's history into the inactive subject — must change the decision:
the subjects are judged again inside the erasure's transaction, with their rows locked."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from cdp.audit.writer import SUBJECTS as AUDIT_SUBJECTS
from cdp.clock import FrozenClock
from cdp.privacy import retention
from cdp.privacy.erasure_lock import export_guard
from cdp.privacy.restriction import restrict
from cdp.privacy.retention import RetentionReport, run_retention
from cdp.profiles.merge import merge_subjects
from cdp.runtime import Runtime
from tests.conftest import CdpEnv
from tests.factories import make_subject
from tests.privacy.test_retention import DAY, NOW, _age, _left, _order


def _retention_while_an_export_runs(rt: Runtime, during: Callable[[], object]) -> RetentionReport:
    """Run retention while an export holds the guard; ``during`` runs once retention has made its
    list and is waiting for the guard to erase the first slice; then the export ends."""
    holding, release, waiting = threading.Event(), threading.Event(), threading.Event()
    reports: list[RetentionReport] = []
    erase = retention.erase_subjects

    def export() -> None:
        with export_guard(rt):
            holding.set()
            release.wait(30)

    def erase_after_signal(**kwargs: Any) -> Any:
        waiting.set()
        return erase(**kwargs)

    retention.erase_subjects = erase_after_signal  # type: ignore[assignment]
    try:
        exporter = threading.Thread(target=export)
        exporter.start()
        assert holding.wait(10)
        runner = threading.Thread(
            target=lambda: reports.append(run_retention(runtime=rt, clock=FrozenClock(NOW)))
        )
        runner.start()
        assert waiting.wait(10)
        time.sleep(0.3)  # retention is blocked on the guard now
        during()
        release.set()
        exporter.join(10)
        runner.join(60)
    finally:
        retention.erase_subjects = erase  # type: ignore[assignment]
    assert reports, "retention did not finish"
    return reports[0]


def _audited(rt: Runtime, sid: str) -> int:
    with rt.data_engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(AUDIT_SUBJECTS)
                .where(AUDIT_SUBJECTS.c.subject_id == sid)
            ).scalar_one()
        )


def test_an_order_placed_while_retention_waits_keeps_the_customer(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    buyer = make_subject(rt, {"email": "came.back@example.com"})
    idle = make_subject(rt)
    for sid in (buyer, idle):
        _age(rt, sid, NOW - 2000 * DAY)
    report = _retention_while_an_export_runs(rt, lambda: _order(rt, buyer, NOW - DAY))
    assert _left(rt) == {buyer}
    assert report.inactive_subjects == 1
    assert rt.vault.has_key(buyer)
    assert _audited(rt, buyer) == 0  # no record of an erasure that did not happen


def test_a_restriction_opened_while_retention_waits_keeps_the_person(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt, {"email": "keep.my.data@example.com"})
    _age(rt, sid, NOW - 2000 * DAY)

    def restrict_now() -> None:
        with rt.data_engine.begin() as conn:
            restrict(conn=conn, subject_id=sid, request_id="pr_x", clock=lambda: NOW)

    _retention_while_an_export_runs(rt, restrict_now)
    assert _left(rt) == {sid}
    assert rt.vault.has_key(sid)


def test_an_active_customer_absorbed_by_an_inactive_subject_is_not_erased(
    cdp_env: CdpEnv,
) -> None:
    """The older subject survives a merge: here the inactive one. It now holds the active
    customer's orders, so it is active, and nothing of either is erased."""
    rt = cdp_env.runtime
    idle = make_subject(rt, {"email": "old.account@example.com"})
    _age(rt, idle, NOW - 2000 * DAY)
    active = make_subject(rt, {"email": "still.buying@example.com"})
    _order(rt, active, NOW - 10 * DAY)

    def merge() -> None:
        with rt.data_engine.begin() as conn:
            merge_subjects(
                runtime=rt, conn=conn, survivor=idle, absorbed=active, linked_by="email", now=NOW
            )

    _retention_while_an_export_runs(rt, merge)
    assert _left(rt) == {idle}
    assert rt.vault.has_key(idle)


def test_a_judged_erasure_records_and_erases_the_still_inactive(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    idle = make_subject(rt, {"email": "gone.quiet@example.com"})
    _age(rt, idle, NOW - 2000 * DAY)
    report = run_retention(runtime=rt, clock=FrozenClock(NOW))
    assert report.inactive_subjects == 1
    assert _left(rt) == set()
    assert not rt.vault.has_key(idle)  # the key goes once the rows are gone
    assert _audited(rt, idle) == 1
