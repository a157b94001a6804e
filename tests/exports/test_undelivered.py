"""An operator can see which webhook batches of an export were dead-lettered and why, through
``GET /v1/exports/{id}`` and ``cdp export show``: before, only the count did, and the reason was
in the log of the process that ran the export. Never the rows or their subjects."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cdp.access.principals import create as create_principal
from cdp.api.app import create_app
from cdp.cli import app as cli_app
from cdp.exports.run import run_export
from tests.exports.conftest import World
from tests.exports.receiver import Receiver, running


def test_dead_lettered_batches_are_listed_with_their_last_answer(world: World) -> None:
    for i in range(5):
        world.person({"email": f"x{i}@example.com"})
    with running(Receiver(script=[200, 500, 500, 200])) as rx:
        made = world.destination(
            "hook", "webhook", "email_marketing", ["email"], min_audience=1, url=rx.url,
            batch_size=2, max_attempts=2,
        )  # fmt: skip
        rx.secret = made.signing_secret or ""
        result = run_export(
            runtime=world.rt, ctx=world.ctx("email_marketing"), segment="everyone",
            destination="hook",
        )  # fmt: skip
    export_id = result.export_id
    expected = [
        {
            "seq": 2,
            "op": "add",
            "rows": 2,
            "attempts": 2,
            "last_status": 500,
            "last_error": "server_error",
        }
    ]
    token = create_principal(runtime=world.rt, name="mk2", roles=["marketer"]).token
    headers = {"Authorization": f"Bearer {token}", "X-Purpose": "email_marketing"}
    with TestClient(create_app()) as client:
        r = client.get(f"/v1/exports/{export_id}", headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "partial" and r.json()["undelivered"] == expected
    assert "@example.com" not in r.text
    shown = CliRunner().invoke(
        cli_app, ["export", "show", export_id, "--token", token, "--purpose", "email_marketing"]
    )
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["undelivered"] == expected
