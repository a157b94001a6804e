"""Creating a destination and rotating its signing secret are recorded in the audit log (API,
CLI and the demo's path, which share the service): who did it, to which destination, in the
transaction that makes the change. Before, neither left a record; only a denied try did."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cdp.access.principals import create as create_principal
from cdp.api.app import create_app
from cdp.audit import operations
from cdp.audit.writer import LOG
from cdp.cli import app as cli_app
from cdp.errors import AuditWriteError
from cdp.exports.destinations import get_destination, list_destinations
from tests.exports.conftest import World


def _records(world: World) -> list[tuple[str, str, list[str]]]:
    with world.rt.data_engine.connect() as conn:
        rows = conn.execute(
            sa.select(LOG.c.principal_name, LOG.c.action, LOG.c.fields)
            .where(LOG.c.resource == "destinations", LOG.c.outcome == "allowed")
            .order_by(LOG.c.seq)
        )
        return [(r[0], r[1], json.loads(r[2])) for r in rows]


def test_api_and_cli_changes_are_recorded(world: World) -> None:
    admin = create_principal(runtime=world.rt, name="root", roles=["admin"]).token
    headers = {"Authorization": f"Bearer {admin}", "X-Purpose": "operations"}
    body = {
        "name": "hook",
        "kind": "webhook",
        "purpose": "email_marketing",
        "fields": ["email"],
        "url": "https://hooks.example.com/in",
    }
    with TestClient(create_app()) as client:
        assert client.post("/v1/destinations", json=body, headers=headers).status_code == 201
        r = client.post("/v1/destinations/hook/rotate-secret", headers=headers)
        assert r.status_code == 200, r.text
    runner = CliRunner()
    made = runner.invoke(
        cli_app,
        ["destinations", "create", "mail", "--kind", "csv", "--serves", "email_marketing",
         "--fields", "email", "--token", admin],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    turned = runner.invoke(cli_app, ["destinations", "rotate-secret", "hook", "--token", admin])
    assert turned.exit_code == 0, turned.output
    hook = get_destination(runtime=world.rt, name="hook").id
    mail = get_destination(runtime=world.rt, name="mail").id
    assert _records(world) == [
        ("root", "create", [f"destination:{hook}"]),
        ("root", "write", [f"destination:{hook}"]),
        ("root", "create", [f"destination:{mail}"]),
        ("root", "write", [f"destination:{hook}"]),
    ]


def test_a_change_the_log_cannot_record_is_not_made(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = create_principal(runtime=world.rt, name="root", roles=["admin"]).token
    real = operations.record_access

    def failing(**kwargs: object) -> None:
        real(**kwargs)  # type: ignore[arg-type]
        raise AuditWriteError("the audit log refused the record")

    monkeypatch.setattr(operations, "record_access", failing)
    runner = CliRunner()
    made = runner.invoke(
        cli_app,
        ["destinations", "create", "mail", "--kind", "csv", "--serves", "email_marketing",
         "--fields", "email", "--token", admin],
    )  # fmt: skip
    assert made.exit_code != 0
    assert list_destinations(runtime=world.rt) == [] and _records(world) == []


def test_changes_and_switching_off_and_on_are_recorded(world: World) -> None:
    """What was changed, by whom: ``set:<setting>`` for each setting changed, the new field
    list when the fields changed, the state when it was switched; a request that changes
    nothing leaves no record."""
    admin = create_principal(runtime=world.rt, name="root", roles=["admin"]).token
    headers = {"Authorization": f"Bearer {admin}", "X-Purpose": "operations"}
    world.destination("mail", "csv", "email_marketing", ["email"])
    mail = get_destination(runtime=world.rt, name="mail").id
    with TestClient(create_app()) as client:
        r = client.patch(
            "/v1/destinations/mail",
            json={"fields": ["email", "first_name"], "min_audience": 5},
            headers=headers,
        )
        assert r.status_code == 200, r.text
        assert client.patch("/v1/destinations/mail", json={}, headers=headers).status_code == 200
        assert client.post("/v1/destinations/mail/disable", headers=headers).status_code == 200
        assert client.post("/v1/destinations/mail/disable", headers=headers).status_code == 200
    runner = CliRunner()
    turned = runner.invoke(cli_app, ["destinations", "enable", "mail", "--token", admin])
    assert turned.exit_code == 0, turned.output
    changed = runner.invoke(
        cli_app, ["destinations", "update", "mail", "--min-audience", "9", "--token", admin]
    )
    assert changed.exit_code == 0, changed.output
    assert _records(world) == [
        ("root", "write", [f"destination:{mail}", "set:fields", "set:min_audience",
                           "field:email", "field:first_name"]),
        ("root", "write", [f"destination:{mail}", "set:enabled", "enabled:false"]),
        ("root", "write", [f"destination:{mail}", "set:enabled", "enabled:true"]),
        ("root", "write", [f"destination:{mail}", "set:min_audience"]),
    ]  # fmt: skip


def test_a_change_or_switch_the_log_cannot_record_is_not_made(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = create_principal(runtime=world.rt, name="root", roles=["admin"]).token
    world.person({"email": "a@example.com"})
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    world.export_email()
    before = get_destination(runtime=world.rt, name="mail")
    real = operations.record_access

    def failing(**kwargs: object) -> None:
        real(**kwargs)  # type: ignore[arg-type]
        raise AuditWriteError("the audit log refused the record")

    monkeypatch.setattr(operations, "record_access", failing)
    runner = CliRunner()
    for args in (
        ["update", "mail", "--fields", "email,first_name", "--min-audience", "3"],
        ["disable", "mail"],
    ):
        done = runner.invoke(cli_app, ["destinations", *args, "--token", admin])
        assert done.exit_code != 0
    assert get_destination(runtime=world.rt, name="mail") == before
    assert _records(world) == []
    with world.rt.data_engine.connect() as conn:  # the sync state was not touched either
        held = conn.execute(sa.text("SELECT confirmed FROM export_sync_members")).scalars().all()
    assert [bool(c) for c in held] == [True]
