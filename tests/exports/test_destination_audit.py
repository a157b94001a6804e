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
