"""``cdp destinations update|disable|enable``, run for real (the entry point, its exit statuses):
changes shown by ``list`` and ``show``, refusals exit 2 with one line, and a disabled
destination's ``cdp export run`` refused with ``destination_disabled``."""

from __future__ import annotations

import os
import subprocess

import pytest

from cdp.access.principals import create as create_principal
from cdp.clock import FrozenClock
from cdp.exports.destinations import get_destination
from cdp.segments.service import create_segment
from cdp.segments.views import SegmentIn
from tests.conftest import CdpEnv
from tests.crash.helpers import CLI
from tests.exports.conftest import EVERYONE, T0, World


@pytest.fixture
def world(cdp_env: CdpEnv) -> World:
    clock = FrozenClock(T0)
    create_segment(
        runtime=cdp_env.runtime,
        data=SegmentIn(name="everyone", rule=EVERYONE),
        actor="test",
        clock=clock,
    )
    return World(cdp_env.runtime, clock)


def _cdp(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_update_disable_enable(world: World) -> None:
    world.person({"email": "c@example.com"})
    admin = create_principal(runtime=world.rt, name="root", roles=["admin"]).token
    marketer = create_principal(runtime=world.rt, name="mk", roles=["marketer"]).token
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)

    done = _cdp("destinations", "update", "mail", "--fields", "email,first_name",
                "--min-audience", "2", "--token", admin)  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = _flat(done.stdout)
    assert "changed: fields, min_audience" in out
    assert "sends every eligible subject again" in out
    info = get_destination(runtime=world.rt, name="mail")
    assert (info.fields, info.min_audience) == (("email", "first_name"), 2)

    done = _cdp("destinations", "disable", "mail", "--token", admin)
    assert done.returncode == 0, done.stderr
    assert "mail is disabled" in _flat(done.stdout)
    assert "disabled" in _flat(_cdp("destinations", "list", "--token", admin).stdout)
    assert "state │ disabled" in _flat(
        _cdp("destinations", "show", "mail", "--token", admin).stdout
    )
    assert "already disabled" in _flat(
        _cdp("destinations", "disable", "mail", "--token", admin).stdout
    )

    refused = _cdp("export", "run", "everyone", "-d", "mail", "--token", marketer)
    assert refused.returncode == 2, refused.stdout
    assert "error (destination_disabled)" in _flat(refused.stderr)
    assert "Traceback" not in refused.stderr

    done = _cdp("destinations", "enable", "mail", "--token", admin)
    assert done.returncode == 0 and "mail is enabled" in _flat(done.stdout)
    assert (
        _cdp("destinations", "update", "mail", "--min-audience", "1", "--token", admin).returncode
        == 0
    )
    ran = _cdp("export", "run", "everyone", "-d", "mail", "--token", marketer)
    assert ran.returncode == 0, ran.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--kind", "jsonl"], "error (validation_failed)"),
        (["--serves", "sms_marketing"], "error (validation_failed)"),
        (["--url", "https://169.254.169.254/x"], "error (validation_failed)"),
        (["--fields", "password"], "error (validation_failed)"),
        (["--min-audience", "0"], "error (validation_failed)"),
        ([], "give at least one setting to change"),
    ],
)
def test_a_refused_update_exits_2_and_changes_nothing(
    world: World, args: list[str], says: str
) -> None:
    admin = create_principal(runtime=world.rt, name="root", roles=["admin"]).token
    world.destination("mail", "csv", "email_marketing", ["email"])
    before = get_destination(runtime=world.rt, name="mail")
    done = _cdp("destinations", "update", "mail", *args, "--token", admin)
    assert done.returncode == 2, done.stdout
    assert says in _flat(done.stderr)
    if "--kind" in args or "--serves" in args:
        assert "create a new destination" in _flat(done.stderr)
    assert "169.254" not in done.stderr and "Traceback" not in done.stderr
    assert get_destination(runtime=world.rt, name="mail") == before


def test_a_marketer_cannot_change_a_destination(world: World) -> None:
    marketer = create_principal(runtime=world.rt, name="mk", roles=["marketer"]).token
    world.destination("mail", "csv", "email_marketing", ["email"])
    for args in (["update", "mail", "--min-audience", "5"], ["disable", "mail"]):
        done = _cdp("destinations", *args, "--token", marketer)
        assert done.returncode == 2 and "error (forbidden)" in _flat(done.stderr)
    assert get_destination(runtime=world.rt, name="mail").enabled
