"""Exports and the traits they read: ``cdp serve``'s traits job runs in the export scheduler's
thread before the exports due with it, and every manifest says when its traits were computed
(``traits_computed_at``, null if never)."""

from __future__ import annotations

import threading
from datetime import timedelta

from structlog.testing import capture_logs

from cdp.exports.records import get_export
from cdp.exports.schedule import create_schedule, list_schedules, scheduler_loop
from cdp.traits.compute import compute_traits
from tests.exports.conftest import World

DAY = timedelta(days=1)


def test_the_manifest_says_when_the_traits_were_computed(world: World) -> None:
    for i in range(2):
        world.person({"email": f"m{i}@example.com"})
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    first = world.export_email()
    assert "traits_computed_at" in first.manifest and first.manifest["traits_computed_at"] is None
    computed = world.clock()
    compute_traits(runtime=world.rt, clock=world.clock)
    second = world.export_email()
    assert second.manifest["traits_computed_at"] == computed.isoformat()
    assert second.manifest["consent_snapshot_at"] == world.clock().isoformat() != computed
    stored = get_export(runtime=world.rt, export_id=second.export_id).manifest
    assert stored == second.manifest


def test_the_scheduler_thread_refreshes_traits_before_the_exports_due_and_stops_on_stop(
    world: World,
) -> None:
    """The export a daily schedule sends on a server's first pass reads traits the job has just
    computed (the manifest says when); setting ``stop`` ends the thread."""
    from cdp.jobs import TraitsJob

    rt = world.rt
    for i in range(2):
        world.person({"email": f"w{i}@example.com"})
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    world.ctx("email_marketing")  # the principal the schedule runs as
    create_schedule(
        runtime=rt,
        ctx=world.ctx("email_marketing"),
        name="daily",
        segment="everyone",
        destination="mail",
        every_seconds=86_400,
        clock=world.clock,
    )
    world.clock.advance(minutes=1)
    job = TraitsJob(runtime=rt, interval=DAY, clock=world.clock)
    stop = threading.Event()
    with capture_logs() as logs:
        thread = threading.Thread(
            target=scheduler_loop,
            kwargs={
                "runtime": rt,
                "stop": stop,
                "poll_seconds": 0.05,
                "clock": world.clock,
                "before_exports": job.run_if_due,
            },
        )
        thread.start()
        deadline = threading.Event()
        for _ in range(200):
            if list_schedules(runtime=rt)[0].last_export_id is not None:
                break
            deadline.wait(0.05)
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    events = [e["event"] for e in logs]
    assert events.index("traits run") < events.index("scheduled export ran")
    assert events.count("traits run") == 1  # later passes found the traits fresh
    assert events[-1] == "export scheduler stopped"
    export_id = list_schedules(runtime=rt)[0].last_export_id
    assert export_id is not None
    manifest = get_export(runtime=rt, export_id=export_id).manifest
    assert manifest is not None and manifest["traits_computed_at"] == world.clock().isoformat()
