"""Webhook signing secrets go through the key store's guard on KEK versions, and a rewrap
continues past a secret it cannot read, then names the destinations to fix."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from cdp.cli import app
from cdp.errors import KeyMaterialError
from cdp.exports.destinations import (
    DESTINATIONS,
    DestinationSpec,
    create_destination,
    list_destinations,
)
from cdp.exports.secret_rotation import secrets_per_version
from cdp.exports.signing_secrets import signing_secret
from tests.conftest import CdpEnv

runner = CliRunner()


def _hook(name: str) -> DestinationSpec:
    return DestinationSpec(
        name=name, kind="webhook", purpose="email_marketing", fields=["email"],
        url="https://hooks.example.com/in",
    )  # fmt: skip


def test_a_stale_process_cannot_wrap_a_secret_under_a_retired_version(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDP_MASTER_KEYS", cdp_env.settings.resolved_key_file.read_text())
    stale = cdp_env.reopen()  # key material with version 1 only, never reloaded
    monkeypatch.delenv("CDP_MASTER_KEYS")
    admin = cdp_env.reopen()
    for step in (["rotate"], ["rewrap"], ["retire", "1"]):
        assert runner.invoke(app, ["keys", *step]).exit_code == 0, step
    with pytest.raises(KeyMaterialError, match="version 1 is retired"):
        create_destination(runtime=stale, spec=_hook("stalehook"), created_by="admin")
    assert list_destinations(runtime=admin) == []
    create_destination(runtime=admin, spec=_hook("hook"), created_by="admin")
    assert secrets_per_version(admin) == {2: 1}
    assert admin.keystore.wraps_per_version()[2] == 1  # counted like a data key


def test_rewrap_continues_past_an_unreadable_secret_and_names_it(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    made = {
        name: create_destination(runtime=rt, spec=_hook(name), created_by="admin")
        for name in ("a-hook", "b-hook", "c-hook")
    }
    with rt.data_engine.begin() as conn:  # what a release before the guard could store
        conn.execute(
            sa.update(DESTINATIONS)
            .where(DESTINATIONS.c.name == "b-hook")
            .values(secret_ct=b"\x00" * 60)
        )
    assert runner.invoke(app, ["keys", "rotate"]).exit_code == 0
    out = runner.invoke(app, ["keys", "rewrap"])
    assert out.exit_code != 0 and isinstance(out.exception, KeyMaterialError)
    message = str(out.exception)
    assert "'b-hook'" in message and "rotate-secret" in message
    assert "a-hook" not in message and "c-hook" not in message
    assert secrets_per_version(rt) == {1: 1, 2: 2}  # the others were re-wrapped
    rt = cdp_env.reopen()
    for name in ("a-hook", "c-hook"):
        dest = made[name]
        assert signing_secret(runtime=rt, destination=dest.destination) == dest.signing_secret
