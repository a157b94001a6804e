"""cdp principals create|list|revoke: token printed once, stored hashed, never listed."""

from __future__ import annotations

from typer.testing import CliRunner

from cdp.access.principals import authenticate
from cdp.cli import app
from cdp.errors import AuthenticationError
from tests.conftest import CdpEnv


def test_create_list_revoke(cdp_env: CdpEnv) -> None:
    runner = CliRunner()
    r = runner.invoke(
        app,
        [
            "principals",
            "create",
            "crm-sync",
            "--role",
            "ingest",
            "--kind",
            "service",
            "--expires-in",
            "30d",
        ],
    )
    assert r.exit_code == 0, r.output
    token = r.stdout.strip().splitlines()[-1]
    assert token.startswith("cdp_") and len(token) > 40
    rt = cdp_env.runtime
    info = authenticate(runtime=rt, token=token)
    assert info.roles == ("ingest",) and info.expires_at is not None
    listing = runner.invoke(app, ["principals", "list"])
    assert listing.exit_code == 0 and "crm-sync" in listing.output and token not in listing.output
    assert runner.invoke(app, ["principals", "revoke", "crm-sync"]).exit_code == 0
    try:
        authenticate(runtime=rt, token=token)
    except AuthenticationError:
        pass
    else:
        raise AssertionError("a revoked token still authenticates")
    assert "revoked" in runner.invoke(app, ["principals", "list"]).output


def test_create_refuses_bad_input(cdp_env: CdpEnv) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["principals", "create", "x", "--role", "wizard"]).exit_code != 0
    assert (
        runner.invoke(
            app, ["principals", "create", "x", "--role", "admin", "--expires-in", "soon"]
        ).exit_code
        != 0
    )
    assert runner.invoke(app, ["principals", "revoke", "nobody"]).exit_code != 0
