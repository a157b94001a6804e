"""``cdp export run``'s exit status tells a run that left deliveries undone from one that did
not: a webhook export whose batches were dead-lettered (status ``partial``) exited 0, so a cron
job or a pipeline step took it for done. The command, run for real against a real receiver."""

from __future__ import annotations

import os
import subprocess

from cdp.access.principals import create as create_principal
from tests.crash.helpers import CLI
from tests.exports.conftest import World
from tests.exports.receiver import Receiver, running


def _export(token: str, destination: str) -> subprocess.CompletedProcess[str]:
    args = [*CLI, "export", "run", "everyone", "-d", destination, "--token", token]
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)


def test_a_run_with_failed_deliveries_exits_1_and_a_delivered_one_0(world: World) -> None:
    for i in range(3):
        world.person({"email": f"x{i}@example.com"})
    token = create_principal(runtime=world.rt, name="mk", roles=["marketer"]).token
    with running(Receiver(script=[500, 200])) as rx:
        made = world.destination(
            "hook", "webhook", "email_marketing", ["email"], min_audience=1, url=rx.url,
            batch_size=2, max_attempts=1,
        )  # fmt: skip
        rx.secret = made.signing_secret or ""
        partial = _export(token, "hook")  # the first batch dead-lettered, the second delivered
        assert partial.returncode == 1, partial.stderr
        out = " ".join(partial.stdout.split())
        assert "failed delivery │ 2" in out and "sent │ 1" in out and ": partial" in out
        assert "2 subject(s) not delivered" in " ".join(partial.stderr.split())

        again = _export(token, "hook")  # the receiver answers now: everything delivered
        assert again.returncode == 0, again.stderr
        out = " ".join(again.stdout.split())
        assert "sent │ 2" in out and ": succeeded" in out

        rx.script = [*rx.script, *([503] * 10)]  # every batch from now on fails
        world.person({"email": "late@example.com"})
        failed = _export(token, "hook")
        assert failed.returncode == 1, failed.stderr
        assert "failed delivery │ 1" in " ".join(failed.stdout.split())
    assert [status for _, status, _ in world.runs()] == ["partial", "succeeded", "partial"]


def test_a_refused_export_still_exits_2(world: World) -> None:
    world.person({"email": "only@example.com"})
    token = create_principal(runtime=world.rt, name="mk", roles=["marketer"]).token
    with running(Receiver()) as rx:
        world.destination(
            "hook", "webhook", "email_marketing", ["email"], min_audience=5, url=rx.url
        )
        refused = _export(token, "hook")
    assert refused.returncode == 2, refused.stderr
    assert "error (audience_too_small)" in " ".join(refused.stderr.split())
    assert rx.requests == []
