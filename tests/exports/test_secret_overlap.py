"""Rotating a webhook's signing secret: a running export signs its later batches (and retries)
with the new secret, and for an overlap window after the rotation with the old one too, so a
receiver can switch at any moment of the window; after it, the old secret signs nothing.

Before, an export read the secret once, at its start: every batch posted after a rotation was
signed with the old secret only, and a receiver that had switched to the new one refused them."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from cdp.exports.run import ExportResult, run_export
from cdp.exports.signing_secrets import rotate_secret
from cdp.exports.webhook import RetryPolicy, verify_signature
from tests.exports.conftest import World
from tests.exports.receiver import Receiver, running


def _v1s(request: dict[str, Any]) -> int:
    return sum(p.startswith("v1=") for p in request["headers"]["X-CDP-Signature"].split(","))


def _signed_by(request: dict[str, Any], secret: str) -> bool:
    header = request["headers"]["X-CDP-Signature"]
    return verify_signature(secret, header, request["body"], now=request["at"])


def _run(world: World) -> ExportResult:
    world.clock.advance(minutes=1)
    return run_export(
        runtime=world.rt,
        ctx=world.ctx("email_marketing"),
        segment="everyone",
        destination="hook",
        clock=world.clock,
        retry=RetryPolicy(max_attempts=3, sleep=lambda _s: None),
    )


def _hook(world: World, rx: Receiver, **kw: object) -> str:
    made = world.destination(
        "hook", "webhook", "email_marketing", ["email"], min_audience=1, url=rx.url, **kw
    )
    rx.secret = made.signing_secret or ""
    return rx.secret


def test_a_running_export_signs_with_both_secrets_after_a_rotation(world: World) -> None:
    for i in range(5):
        world.person({"email": f"r{i}@example.com"})
    held = threading.Event()
    # the first try of batch 1 is held until the secret is rotated, then answered 500: its
    # retry, and batches 2 and 3, are posted after the rotation
    with running(Receiver(script=[500], hold_first=held)) as rx:
        old = _hook(world, rx, batch_size=2)
        done: list[ExportResult] = []
        export = threading.Thread(target=lambda: done.append(_run(world)))
        export.start()
        deadline = time.monotonic() + 30
        while rx.arrivals == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert rx.arrivals == 1, "the export never posted"
        rotated = rotate_secret(runtime=world.rt, name="hook", clock=world.clock)
        held.set()
        export.join(60)
    new = rotated.secret
    assert done and done[0].status == "succeeded" and new != old
    assert rotated.previous_until == world.clock() + timedelta(hours=24)
    first, *after = rx.requests
    assert len(after) == 3  # batch 1's retry, batches 2 and 3
    assert _v1s(first) == 1 and _signed_by(first, old) and not _signed_by(first, new)
    for r in after:  # the new secret first, the old one beside it during the overlap
        assert _v1s(r) == 2 and _signed_by(r, new) and _signed_by(r, old)
    assert len(rx.processed) == 3  # a receiver still on the old secret took every batch


def test_the_old_secret_signs_nothing_once_the_overlap_is_over(world: World) -> None:
    world.person({"email": "a@example.com"})
    with running(Receiver()) as rx:
        old = _hook(world, rx)
        new = rotate_secret(runtime=world.rt, name="hook", clock=world.clock).secret
        _run(world)  # a minute after the rotation: both
        world.clock.advance(hours=23, minutes=57)
        world.person({"email": "b@example.com"})
        _run(world)  # 23 h 59 min after it: still both
        world.person({"email": "c@example.com"})
        _run(world)  # 24 h after it: the window is over, the new secret alone
    within, late, over = rx.requests
    assert all(_v1s(r) == 2 and _signed_by(r, old) and _signed_by(r, new) for r in (within, late))
    assert _v1s(over) == 1 and _signed_by(over, new) and not _signed_by(over, old)
    with world.rt.data_engine.connect() as conn:  # and it is no longer stored
        row = conn.execute(
            sa.text(
                "SELECT previous_secret_ct, previous_secret_kek_version, previous_secret_until"
                " FROM export_destinations"
            )
        ).one()
    assert tuple(row) == (None, None, None)


def test_no_overlap_signs_with_the_new_secret_at_once(world: World) -> None:
    """``--overlap 0``, for a secret that leaked: the old one stops at once."""
    world.person({"email": "a@example.com"})
    with running(Receiver()) as rx:
        old = _hook(world, rx)
        rotated = rotate_secret(
            runtime=world.rt, name="hook", overlap=timedelta(0), clock=world.clock
        )
        rx.secret = rotated.secret
        result = _run(world)
    (only,) = rx.requests
    assert rotated.previous_until is None and result.status == "succeeded"
    assert _v1s(only) == 1 and _signed_by(only, rotated.secret) and not _signed_by(only, old)


def test_a_second_rotation_keeps_only_the_secret_it_replaced(world: World) -> None:
    world.person({"email": "a@example.com"})
    with running(Receiver()) as rx:
        first = _hook(world, rx)
        second = rotate_secret(runtime=world.rt, name="hook", clock=world.clock).secret
        world.clock.advance(hours=1)
        third = rotate_secret(runtime=world.rt, name="hook", clock=world.clock)
        _run(world)
    (only,) = rx.requests
    assert _v1s(only) == 2 and _signed_by(only, third.secret) and _signed_by(only, second)
    assert not _signed_by(only, first)
    assert third.previous_until == world.clock() - timedelta(minutes=1) + timedelta(hours=24)


@pytest.mark.parametrize("overlap", [timedelta(seconds=-1), timedelta(days=7, seconds=1)])
def test_an_overlap_out_of_bounds_is_refused(world: World, overlap: timedelta) -> None:
    from cdp.errors import InvalidInputError

    with running(Receiver()) as rx:
        old = _hook(world, rx)
        with pytest.raises(InvalidInputError) as refused:
            rotate_secret(runtime=world.rt, name="hook", overlap=overlap, clock=world.clock)
    assert refused.value.field == "overlap"
    from cdp.exports.destinations import get_destination
    from cdp.exports.signing_secrets import signing_secret

    dest = get_destination(runtime=world.rt, name="hook")
    assert signing_secret(runtime=world.rt, destination=dest) == old


def test_the_cli_and_the_api_take_the_overlap(world: World) -> None:
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from cdp.access.principals import create as create_principal
    from cdp.api.app import create_app
    from cdp.cli import app as cli_app

    admin = create_principal(runtime=world.rt, name="root", roles=["admin"]).token
    world.destination(
        "hook", "webhook", "email_marketing", ["email"], url="https://hooks.example.com/in"
    )
    runner = CliRunner()
    shown = runner.invoke(cli_app, ["destinations", "rotate-secret", "hook", "--token", admin])
    assert shown.exit_code == 0, shown.output
    out = " ".join(shown.stdout.split())
    assert "new signing secret: whsec_" in out and "old secret also signs until" in out
    now = runner.invoke(
        cli_app, ["destinations", "rotate-secret", "hook", "--overlap", "0", "--token", admin]
    )
    assert now.exit_code == 0 and "old secret signs nothing" in " ".join(now.stdout.split())
    bad = runner.invoke(
        cli_app, ["destinations", "rotate-secret", "hook", "--overlap", "8d", "--token", admin]
    )
    assert bad.exit_code != 0
    headers = {"Authorization": f"Bearer {admin}", "X-Purpose": "operations"}
    with TestClient(create_app()) as client:
        r = client.post("/v1/destinations/hook/rotate-secret", headers=headers)
        assert r.status_code == 200 and r.json()["previous_secret_until"] is not None
        r = client.post(
            "/v1/destinations/hook/rotate-secret", headers=headers, json={"overlap_seconds": 0}
        )
        assert r.status_code == 200 and r.json()["previous_secret_until"] is None
        r = client.post(
            "/v1/destinations/hook/rotate-secret",
            headers=headers,
            json={"overlap_seconds": 7 * 86400 + 1},
        )
        assert r.status_code == 422
        shown_api = client.get("/v1/destinations/hook", headers=headers).json()
    assert shown_api["previous_secret_until"] is None


def test_a_replaced_secret_in_its_window_is_rewrapped_and_holds_its_kek_version(
    world: World,
) -> None:
    """The replaced secret is wrapped under a KEK version too: ``retire`` must not destroy the
    version while the secret still signs, and ``rewrap`` moves it; once its window is over it
    is cleared rather than re-wrapped."""
    from cdp.exports.secret_rotation import rewrap_secrets, secrets_per_version

    world.person({"email": "a@example.com"})
    with running(Receiver()) as rx:
        old = _hook(world, rx)
        world.rt.provider.rotate()  # KEK version 2: the new secret is wrapped under it
        new = rotate_secret(runtime=world.rt, name="hook", clock=world.clock).secret
        assert secrets_per_version(world.rt, clock=world.clock) == {1: 1, 2: 1}
        assert rewrap_secrets(world.rt, clock=world.clock) == 1  # the replaced one
        assert secrets_per_version(world.rt, clock=world.clock) == {2: 2}
        _run(world)
        world.rt.provider.rotate()  # version 3; the replaced secret's window ends meanwhile
        world.clock.advance(hours=25)
        assert secrets_per_version(world.rt, clock=world.clock) == {2: 1}
        assert rewrap_secrets(world.rt, clock=world.clock) == 1  # the current one
        assert secrets_per_version(world.rt, clock=world.clock) == {3: 1}
    (within,) = rx.requests
    assert _v1s(within) == 2 and _signed_by(within, new) and _signed_by(within, old)
    with world.rt.data_engine.connect() as conn:
        cleared = conn.execute(sa.text("SELECT previous_secret_ct FROM export_destinations"))
        assert cleared.scalar_one() is None


def test_the_documented_verify_accepts_any_of_the_signatures() -> None:
    """The snippet in docs/exports.md read the header into a dict, which keeps the last ``v1``
    only: during an overlap, a receiver that had switched to the new secret refused every
    batch. The documented snippet is run here as a receiver would copy it."""
    import re
    from pathlib import Path

    from cdp.exports.webhook import signature_header

    doc = (Path(__file__).resolve().parents[2] / "docs" / "exports.md").read_text()
    section = doc[doc.index("**How a receiver verifies**") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    scope: dict[str, Any] = {}
    exec(code.group(1), scope)  # our own documentation, as a receiver copies it
    verify = scope["verify"]
    body, now = b'{"rows":[]}', int(time.time())
    both = signature_header(["whsec_new", "whsec_old"], now, body)
    assert verify("whsec_new", both, body) and verify("whsec_old", both, body)
    assert not verify("whsec_other", both, body)
    assert verify("whsec_new", signature_header("whsec_new", now, body), body)
    assert not verify("whsec_new", signature_header("whsec_new", now - 301, body), body)
