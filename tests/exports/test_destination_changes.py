"""Changing a destination (its fields, minimum audience, URL, webhook settings) and switching it
off and on: the same checks as creation, kind and purpose fixed, what a change means for the
incremental sync, and a disabled destination refused by manual exports and skipped by the
scheduler without an export run."""

from __future__ import annotations

import csv
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from cdp.errors import ConflictError, InvalidInputError, NotFoundError
from cdp.exports.audience import SendTimeAudience, segment_audience
from cdp.exports.destination_changes import DestinationChanges, set_enabled, update_destination
from cdp.exports.destinations import get_destination, list_destinations
from cdp.exports.ledger import recipients_of
from cdp.exports.models import SyncMember
from cdp.exports.run import ExportResult, run_export
from cdp.exports.schedule import create_schedule, list_schedules, run_due_exports
from cdp.exports.webhook import RetryPolicy
from cdp.runtime import Runtime
from tests.exports.conftest import World
from tests.exports.receiver import Receiver, running

SYNC = SyncMember.__table__  # type: ignore[attr-defined]
HOOK_URL = "https://hooks.example.com/in"


def _update(world: World, name: str, **changes: Any):  # type: ignore[no-untyped-def]
    return update_destination(
        runtime=world.rt, name=name, changes=DestinationChanges(**changes), clock=world.clock
    )


def _sync(world: World) -> dict[str, bool]:
    with world.rt.data_engine.connect() as conn:
        rows = conn.execute(sa.select(SYNC.c.subject_id, SYNC.c.confirmed)).all()
    return {r[0]: bool(r[1]) for r in rows}


def _adds_file(result: ExportResult) -> list[dict[str, str]]:
    (add,) = [o for o in result.manifest["outputs"] if o["op"] == "add"]
    with Path(add["path"]).open(newline="") as f:
        return list(csv.DictReader(f))


def test_an_update_changes_what_it_names_and_keeps_the_rest(world: World) -> None:
    world.destination("hook", "webhook", "email_marketing", ["email"], url=HOOK_URL)
    before = get_destination(runtime=world.rt, name="hook")
    world.clock.advance(minutes=5)
    changed = _update(world, "hook", min_audience=5, timeout_seconds=3.0, batch_size=200)
    assert changed.changed == ("min_audience", "batch_size", "timeout_seconds")
    assert not changed.resend
    after = get_destination(runtime=world.rt, name="hook")
    assert (after.min_audience, after.batch_size, after.timeout_seconds) == (5, 200, 3.0)
    assert (after.url, after.fields, after.max_attempts) == (HOOK_URL, ("email",), 5)
    assert (after.id, after.created_at, after.has_secret) == (before.id, before.created_at, True)
    assert after.updated_at == world.clock() and before.updated_at < after.updated_at
    # the same values again change nothing; the id is a name too
    again = _update(world, before.id, min_audience=5, fields=["email"], url=HOOK_URL)
    assert again.changed == () and not again.resend


@pytest.mark.parametrize(
    ("kind", "purpose", "fields", "extra", "changes"),
    [
        ("csv", "email_marketing", ["email"], {}, {"fields": ["password"]}),
        ("csv", "email_marketing", ["email"], {}, {"fields": [" ", ""]}),
        ("csv", "email_marketing", ["email"], {}, {"min_audience": 0}),
        ("csv", "email_marketing", ["email"], {}, {"max_attempts": 21}),
        ("csv", "email_marketing", ["email"], {}, {"url": "https://x.example.com/in"}),
        ("meta", "ad_audiences", ["email"], {}, {"fields": ["email", "street"]}),
        ("meta", "ad_audiences", ["email"], {}, {"fields": ["email", "postal_code"]}),
        ("webhook", "email_marketing", ["email"], {"url": HOOK_URL}, {"batch_size": 0}),
        ("webhook", "email_marketing", ["email"], {"url": HOOK_URL}, {"timeout_seconds": 0.0}),
        *(
            ("webhook", "email_marketing", ["email"], {"url": HOOK_URL}, {"url": url})
            for url in (
                "https://169.254.169.254/latest",  # link-local: cloud metadata
                "https://2852039166/x",  # a legacy IPv4 number
                "http://hooks.example.com/in",  # plain http, not to a loopback host
                "https://user:pw@hooks.example.com/in",  # credentials
                "",
            )
        ),
    ],
)
def test_an_update_is_checked_like_a_creation(
    world: World,
    kind: str,
    purpose: str,
    fields: list[str],
    extra: dict[str, object],
    changes: dict[str, Any],
) -> None:
    world.destination("d1", kind, purpose, fields, **extra)
    before = get_destination(runtime=world.rt, name="d1")
    with pytest.raises(InvalidInputError) as refused:
        _update(world, "d1", **changes)
    assert refused.value.field == next(iter(changes))
    assert get_destination(runtime=world.rt, name="d1") == before


@pytest.mark.parametrize(("setting", "value"), [("kind", "jsonl"), ("purpose", "sms_marketing")])
def test_kind_and_purpose_cannot_change(world: World, setting: str, value: str) -> None:
    world.destination("mail", "csv", "email_marketing", ["email"])
    before = get_destination(runtime=world.rt, name="mail")
    with pytest.raises(InvalidInputError) as refused:
        _update(world, "mail", **{setting: value}, min_audience=7)
    assert refused.value.field == setting
    assert "create a new destination" in str(refused.value)
    assert get_destination(runtime=world.rt, name="mail") == before
    # giving the value it has is no change (a client sending the whole destination back)
    same = _update(world, "mail", kind="csv", purpose="email_marketing", min_audience=7)
    assert same.changed == ("min_audience",)


def test_an_unknown_destination_is_not_found(world: World) -> None:
    with pytest.raises(NotFoundError):
        _update(world, "nowhere", min_audience=3)
    with pytest.raises(NotFoundError):
        set_enabled(runtime=world.rt, name="nowhere", enabled=False, clock=world.clock)


def test_a_newly_allowed_field_reaches_everyone_on_the_next_run(world: World) -> None:
    ids = [world.person({"email": f"f{i}@example.com", "first_name": f"Ann{i}"}) for i in range(3)]
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    first = world.export_email()
    assert first.counts.sent == 3 and list(_adds_file(first)[0]) == ["email"]
    assert world.export_email().counts.unchanged == 3

    widened = _update(world, "mail", fields=["first_name", "email"])
    assert widened.changed == ("fields",) and widened.resend
    assert _sync(world) == {s: False for s in ids}  # held, but not with the new field
    third = world.export_email()  # incremental: everyone is sent again, with the new field
    assert (third.counts.sent, third.counts.unchanged) == (3, 0)
    assert third.manifest["mode"] == "incremental"
    rows = _adds_file(third)
    assert sorted(r["first_name"] for r in rows) == ["Ann0", "Ann1", "Ann2"]
    assert {r.fields for r in recipients_of(ids[0], runtime=world.rt)} == {
        ("email",),
        ("email", "first_name"),
    }
    assert _sync(world) == {s: True for s in ids}
    assert world.export_email().counts.unchanged == 3  # then incremental again

    narrowed = _update(world, "mail", fields=["email"])  # nothing new to send: no resend
    assert narrowed.changed == ("fields",) and not narrowed.resend
    assert _sync(world) == {s: True for s in ids}
    assert world.export_email().counts.unchanged == 3


def test_a_field_allowed_while_an_export_runs_is_sent_by_the_next_run(world: World) -> None:
    """The running export sends the fields it started with; its adds must not be taken for
    holding the new field, or no incremental run would ever send it to them."""
    ids = [world.person({"email": f"r{i}@example.com", "first_name": f"Bo{i}"}) for i in range(3)]
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)

    def widen_then_resolve(rt: Runtime, segment: str, clock: Any) -> SendTimeAudience:
        _update(world, "mail", fields=["email", "first_name"])
        return segment_audience(rt, segment, clock)

    world.clock.advance(minutes=1)
    during = run_export(
        runtime=world.rt,
        ctx=world.ctx("email_marketing"),
        segment="everyone",
        destination="mail",
        clock=world.clock,
        resolver=widen_then_resolve,
    )
    assert during.counts.sent == 3 and list(_adds_file(during)[0]) == ["email"]
    assert _sync(world) == {s: False for s in ids}
    after = world.export_email()
    assert after.counts.sent == 3 and sorted(r["first_name"] for r in _adds_file(after)) == [
        "Bo0",
        "Bo1",
        "Bo2",
    ]


def test_a_new_url_is_the_same_recipient_at_a_new_address(world: World) -> None:
    ids = [world.person({"email": f"u{i}@example.com"}) for i in range(3)]
    one_try = RetryPolicy(max_attempts=1, sleep=lambda _s: None)

    def export() -> ExportResult:
        world.clock.advance(minutes=1)
        return run_export(
            runtime=world.rt,
            ctx=world.ctx("email_marketing"),
            segment="everyone",
            destination="hook",
            clock=world.clock,
            retry=one_try,
        )

    with running(Receiver()) as old:
        made = world.destination(
            "hook", "webhook", "email_marketing", ["email"], min_audience=1, url=old.url
        )
        old.secret = made.signing_secret or ""
        assert export().counts.sent == 3 and len(old.processed) == 1
    with running(Receiver(secret=made.signing_secret or "")) as new:
        moved = _update(world, "hook", url=new.url)
        assert moved.changed == ("url",) and not moved.resend
        assert _sync(world) == {s: True for s in ids}  # the sync state is kept
        assert export().counts.unchanged == 3 and new.requests == []
        world.consent(ids[0], ["email_marketing"], "withdrawn")
        gone = export()  # the withdrawal goes to the new address, signed with the same secret
        assert (gone.counts.removed, gone.counts.unchanged) == (1, 2)
        assert [(b["op"], [r["email"] for r in b["rows"]]) for b in new.processed.values()] == [
            ("remove", ["u0@example.com"])
        ]
    # the ledger keeps what went to the old address
    assert [r.op for r in recipients_of(ids[0], runtime=world.rt)] == ["add", "remove"]
    assert len(recipients_of(ids[1], runtime=world.rt)) == 1


def test_a_disabled_destination_refuses_exports_until_enabled(world: World) -> None:
    world.person({"email": "d@example.com"})
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    off = set_enabled(runtime=world.rt, name="mail", enabled=False, clock=world.clock)
    assert off.changed == ("enabled",) and not off.destination.enabled
    assert [d.enabled for d in list_destinations(runtime=world.rt)] == [False]
    with pytest.raises(ConflictError) as refused:
        world.export_email()
    assert refused.value.code == "destination_disabled"
    assert "disabled" in str(refused.value)
    assert world.runs() == []  # nothing stored, staged or sent
    again = set_enabled(runtime=world.rt, name="mail", enabled=False, clock=world.clock)
    assert again.changed == ()  # already off: nothing to do
    # a disabled destination can still be changed (e.g. its address fixed before enabling it)
    assert _update(world, "mail", min_audience=2).changed == ("min_audience",)
    on = set_enabled(runtime=world.rt, name="mail", enabled=True, clock=world.clock)
    assert on.changed == ("enabled",) and on.destination.enabled
    _update(world, "mail", min_audience=1)
    assert world.export_email().status == "succeeded"


def test_schedules_of_a_disabled_destination_are_skipped_without_a_run(world: World) -> None:
    world.person({"email": "s@example.com"})
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    create_schedule(
        runtime=world.rt,
        ctx=world.ctx("email_marketing"),
        name="daily",
        segment="everyone",
        destination="mail",
        every_seconds=86_400,
        clock=world.clock,
    )
    first_due = list_schedules(runtime=world.rt)[0].next_run_at
    set_enabled(runtime=world.rt, name="mail", enabled=False, clock=world.clock)

    def skipped_lines(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [e for e in logs if e.get("schedule") == "daily"]

    with capture_logs() as logs:
        ran = run_due_exports(runtime=world.rt, clock=world.clock)
        assert run_due_exports(runtime=world.rt, clock=world.clock) == []  # claimed: not due
    assert [(r.schedule, r.export_id, r.status) for r in ran] == [
        ("daily", None, "destination_disabled")
    ]
    (line,) = skipped_lines(logs)  # logged once for the occurrence
    assert line["destination"] == "mail" and "disabled" in line["event"]
    assert line["log_level"] == "info"
    assert world.runs() == []
    (info,) = list_schedules(runtime=world.rt)
    assert info.next_run_at == first_due + timedelta(days=1)
    assert info.last_status == "destination_disabled" and info.last_export_id is None

    world.clock.advance(days=1)  # the next occurrence: skipped and logged once again
    with capture_logs() as logs:
        assert [r.status for r in run_due_exports(runtime=world.rt, clock=world.clock)] == [
            "destination_disabled"
        ]
    assert len(skipped_lines(logs)) == 1 and world.runs() == []

    set_enabled(runtime=world.rt, name="mail", enabled=True, clock=world.clock)
    world.clock.advance(days=1)
    assert [r.status for r in run_due_exports(runtime=world.rt, clock=world.clock)] == ["succeeded"]
    assert len(world.runs()) == 1
