"""Scheduled exports (one at a time, claimed, logged), the HTTP API and the CLI, and the
send-time audience query against the segments compiler."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cdp.access.principals import create as create_principal
from cdp.access.principals import revoke
from cdp.api.app import create_app
from cdp.cli import app as cli_app
from cdp.errors import InvalidInputError, NotFoundError
from cdp.exports.audience import segment_audience
from cdp.exports.schedule import (
    create_schedule,
    list_schedules,
    parse_every,
    run_due_exports,
)
from cdp.privacy.restriction import restrict
from cdp.segments.compiler import compile_rule
from cdp.segments.service import parse
from cdp.traits.config import TraitsConfig
from tests.exports.conftest import EVERYONE, World


def test_due_schedules_run_once_each_and_move_on(world: World) -> None:
    rt = world.rt
    for i in range(3):
        world.person({"email": f"s{i}@example.com"})
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    world.destination("big", "csv", "email_marketing", ["email"], min_audience=50)
    ctx = world.ctx("email_marketing")
    create_schedule(
        runtime=rt,
        ctx=ctx,
        name="daily",
        segment="everyone",
        destination="mail",
        every_seconds=parse_every("1d"),
        clock=world.clock,
    )
    create_schedule(
        runtime=rt,
        ctx=ctx,
        name="too-small",
        segment="everyone",
        destination="big",
        every_seconds=3600,
        clock=world.clock,
    )
    ran = run_due_exports(runtime=rt, clock=world.clock)
    assert [(r.schedule, r.status) for r in ran] == [
        ("daily", "succeeded"),
        ("too-small", "audience_too_small"),
    ]
    assert run_due_exports(runtime=rt, clock=world.clock) == []  # nothing due any more
    world.clock.advance(hours=2)
    assert [r.schedule for r in run_due_exports(runtime=rt, clock=world.clock)] == ["too-small"]
    world.clock.advance(days=3)  # missed occurrences are not replayed
    assert len(run_due_exports(runtime=rt, clock=world.clock)) == 2
    by_name = {s.name: s for s in list_schedules(runtime=rt)}
    assert by_name["daily"].next_run_at > world.clock()
    assert by_name["daily"].last_status == "succeeded" and by_name["daily"].last_export_id
    with rt.data_engine.connect() as conn:
        runs = conn.execute(
            sa.text("SELECT count(*) FROM export_runs WHERE schedule_id IS NOT NULL")
        ).scalar_one()
    assert runs == 5


def test_a_revoked_principal_stops_its_schedules(world: World) -> None:
    rt = world.rt
    world.person({"email": "r@example.com"})
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    ctx = world.ctx("email_marketing")
    create_schedule(
        runtime=rt,
        ctx=ctx,
        name="daily",
        segment="everyone",
        destination="mail",
        every_seconds=86400,
        clock=world.clock,
    )
    revoke(runtime=rt, name=ctx.principal_name, clock=world.clock)
    (ran,) = run_due_exports(runtime=rt, clock=world.clock)
    assert ran.status == "conflict" and ran.export_id is None


def test_schedule_intervals() -> None:
    assert parse_every("30m") == 1800 and parse_every("6h") == 21600
    assert parse_every("366d") == 366 * 86_400
    for bad in ("10s", "1w", "", "d", "367d", "25000d", "99999999999d", "9" * 40 + "m"):
        with pytest.raises(InvalidInputError):
            parse_every(bad)


def test_a_schedule_stored_with_a_huge_interval_does_not_stop_the_others(world: World) -> None:
    """Such an interval (accepted before the yearly bound) made every scheduler pass overflow
    computing its next run, so no schedule due after it ever ran."""
    rt = world.rt
    world.person({"email": "h@example.com"})
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    ctx = world.ctx("email_marketing")
    for name in ("a-huge", "b-daily"):
        create_schedule(
            runtime=rt,
            ctx=ctx,
            name=name,
            segment="everyone",
            destination="mail",
            every_seconds=86_400,
            clock=world.clock,
        )
    with rt.data_engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE export_schedules SET every_seconds = :s WHERE name = 'a-huge'"),
            {"s": 2_000_000_000},
        )
    ran = run_due_exports(runtime=rt, clock=world.clock)
    assert sorted(r.schedule for r in ran) == ["a-huge", "b-daily"]


def test_api_runs_and_reads_exports(world: World) -> None:
    rt = world.rt
    for i in range(3):
        world.person({"email": f"a{i}@example.com"})
    admin = create_principal(runtime=rt, name="root", roles=["admin"], clock=world.clock)
    marketer = create_principal(runtime=rt, name="mk", roles=["marketer"], clock=world.clock)
    client = TestClient(create_app())
    h_admin = {"Authorization": f"Bearer {admin.token}", "X-Purpose": "operations"}
    h_mk = {"Authorization": f"Bearer {marketer.token}", "X-Purpose": "email_marketing"}
    r = client.post(
        "/v1/destinations",
        headers=h_admin,
        json={
            "name": "mail",
            "kind": "csv",
            "purpose": "email_marketing",
            "fields": ["email"],
            "min_audience": 1,
        },
    )
    assert r.status_code == 201 and r.json()["signing_secret"] is None
    assert (
        client.post(
            "/v1/destinations",
            headers=h_mk,
            json={"name": "x", "kind": "csv", "purpose": "email_marketing", "fields": ["email"]},
        ).status_code
        == 403
    )
    r = client.post(
        "/v1/exports", headers=h_mk, json={"segment": "everyone", "destination": "mail"}
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "succeeded" and body["manifest"]["counts"]["sent"] == 3
    r = client.get(f"/v1/exports/{body['id']}", headers=h_mk)
    assert r.status_code == 200 and r.json()["manifest"] == body["manifest"]
    assert "a0@example.com" not in r.text
    assert client.get("/v1/exports/exp_" + "0" * 24, headers=h_mk).status_code == 404
    # the admin may not run exports (no consent purpose for it), the analyst neither
    h_admin_mail = {**h_admin, "X-Purpose": "email_marketing"}
    assert (
        client.post(
            "/v1/exports", headers=h_admin_mail, json={"segment": "everyone", "destination": "mail"}
        ).status_code
        == 403
    )
    # purpose mismatch, then refusal with counts
    r = client.post(
        "/v1/exports",
        headers={**h_mk, "X-Purpose": "sms_marketing"},
        json={"segment": "everyone", "destination": "mail"},
    )
    assert r.status_code == 422
    client.post(
        "/v1/destinations",
        headers=h_admin,
        json={
            "name": "big",
            "kind": "csv",
            "purpose": "email_marketing",
            "fields": ["email"],
            "min_audience": 10,
        },
    )
    r = client.post("/v1/exports", headers=h_mk, json={"segment": "everyone", "destination": "big"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "audience_too_small"
    assert "only 3 subjects remain" in r.json()["error"]["message"]
    listed = client.get("/v1/destinations", headers=h_mk | {"X-Purpose": "email_marketing"})
    assert [d["name"] for d in listed.json()["items"]] == ["big", "mail"]


def test_cli_destinations_and_export_run(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = world.rt
    for i in range(2):
        world.person({"email": f"c{i}@example.com"})
    admin = create_principal(runtime=rt, name="root", roles=["admin"], clock=world.clock)
    marketer = create_principal(runtime=rt, name="mk", roles=["marketer"], clock=world.clock)
    runner = CliRunner()
    out = runner.invoke(
        cli_app,
        [
            "destinations",
            "create",
            "hook",
            "--kind",
            "webhook",
            "--serves",
            "email_marketing",
            "--fields",
            "email",
            "--url",
            "https://hooks.example.com/in",
            "--token",
            admin.token,
        ],
    )
    assert out.exit_code == 0, out.output
    assert "whsec_" in out.output
    out = runner.invoke(
        cli_app,
        [
            "destinations",
            "create",
            "mail",
            "--kind",
            "csv",
            "--serves",
            "email_marketing",
            "--fields",
            "email",
            "--min-audience",
            "1",
            "--token",
            admin.token,
        ],
    )
    assert out.exit_code == 0, out.output
    out = runner.invoke(cli_app, ["destinations", "list", "--token", admin.token])
    assert "hook" in out.output and "mail" in out.output
    out = runner.invoke(
        cli_app, ["export", "run", "everyone", "--destination", "mail", "--token", marketer.token]
    )
    assert out.exit_code == 0, out.output
    assert "succeeded" in out.output and "c0@example.com" not in out.output


def test_send_time_query_is_the_compiled_segment_plus_restricted(world: World) -> None:
    rt = world.rt
    ids = [world.person({"email": f"q{i}@example.com"}) for i in range(4)]
    with rt.data_engine.begin() as conn:
        restrict(conn=conn, subject_id=ids[0], request_id=None, clock=world.clock)
    audience = segment_audience(rt, "everyone", world.clock)
    clause = parse(TraitsConfig(), EVERYONE)
    with rt.data_engine.connect() as conn:
        mine = set(conn.execute(audience.members).scalars())
        theirs = set(conn.execute(compile_rule(clause, now=world.clock())).scalars())
    assert mine == set(ids) and theirs == set(ids) - {ids[0]}
    assert audience.rule_version == 1 and audience.segment == "everyone"


def test_a_schedule_of_an_unknown_segment_is_refused(world: World) -> None:
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    with pytest.raises(NotFoundError):
        create_schedule(
            runtime=world.rt,
            ctx=world.ctx("email_marketing"),
            name="ghost",
            segment="no-such-segment",
            destination="mail",
            every_seconds=3600,
            clock=world.clock,
        )
    assert list_schedules(runtime=world.rt) == []


def test_deleting_an_unknown_schedule_is_not_found(world: World) -> None:
    """It answered "forbidden" (a check under a purpose nobody asked for) and wrote a denied
    audit record."""
    marketer = create_principal(runtime=world.rt, name="mk", roles=["marketer"])
    result = CliRunner().invoke(
        cli_app, ["export", "schedule", "delete", "nope", "--token", marketer.token]
    )
    assert isinstance(result.exception, NotFoundError), result.output
    with world.rt.data_engine.connect() as conn:
        outcomes = list(conn.execute(sa.text("SELECT outcome FROM audit_log")).scalars())
    assert "denied" not in outcomes
    # without a valid token it is still refused first
    anonymous = CliRunner().invoke(cli_app, ["export", "schedule", "delete", "nope"])
    assert anonymous.exception is not None and not isinstance(anonymous.exception, NotFoundError)
