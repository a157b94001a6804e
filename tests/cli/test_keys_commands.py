"""`cdp keys rewrap` is on record before it moves a key, and its outcome after; `cdp keys retire`
of the current version says to rotate first."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from cdp.audit.writer import LOG
from cdp.cli import app
from cdp.crypto.keystore import KeyStore
from tests.conftest import CdpEnv
from tests.factories import make_subject

runner = CliRunner()


def _rewrap_records(cdp_env: CdpEnv) -> list[list[str]]:
    with cdp_env.runtime.data_engine.connect() as conn:
        rows = conn.execute(
            sa.select(LOG.c.fields)
            .where(LOG.c.resource == "keys", LOG.c.action == "rewrap")
            .order_by(LOG.c.seq)
        )
        return [json.loads(r[0]) for r in rows]


def test_rewrap_is_recorded_before_and_after(cdp_env: CdpEnv) -> None:
    make_subject(cdp_env.runtime, {"email": "a@b.cn"})
    assert runner.invoke(app, ["keys", "rotate"]).exit_code == 0
    assert runner.invoke(app, ["keys", "rewrap"]).exit_code == 0
    assert _rewrap_records(cdp_env) == [
        ["stage:started", "kek_version:2"],
        ["stage:completed", "kek_version:2", "data_keys:1", "webhook_secrets:0"],
    ]


def test_a_failing_rewrap_is_on_record(cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    make_subject(cdp_env.runtime, {"email": "a@b.cn"})
    assert runner.invoke(app, ["keys", "rotate"]).exit_code == 0

    def broken(self: KeyStore, *, batch_size: int = 1000) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(KeyStore, "rewrap", broken)
    assert runner.invoke(app, ["keys", "rewrap"]).exit_code != 0
    assert _rewrap_records(cdp_env) == [
        ["stage:started", "kek_version:2"],
        ["stage:failed", "kek_version:2", "error:OSError"],
    ]


def test_retiring_the_current_version_says_rotate_first(cdp_env: CdpEnv) -> None:
    """Even with a webhook secret under it: rewrapping would not make it retirable."""
    from cdp.exports.destinations import DestinationSpec, create_destination

    spec = DestinationSpec(
        name="hook", kind="webhook", purpose="email_marketing", fields=["email"],
        url="https://hooks.example.com/in",
    )  # fmt: skip
    create_destination(runtime=cdp_env.runtime, spec=spec, created_by="admin")
    refused = runner.invoke(app, ["keys", "retire", "1"])
    assert refused.exit_code != 0
    assert "is current; rotate first" in str(refused.exception)


def _states(cdp_env: CdpEnv) -> dict[int, str]:
    return {
        s.version: "current" if s.current else s.state for s in cdp_env.runtime.keystore.status()
    }


def test_status_names_each_version_state(cdp_env: CdpEnv) -> None:
    """A version a rotation left behind is ``old`` (still used for new keys by a process that
    has not seen the rotation); ``rewrap`` marks it ``superseded`` (nothing new is wrapped under
    it); ``retire`` makes it ``retired``. Before, status said ``old`` after a rewrap too."""
    make_subject(cdp_env.runtime, {"email": "a@b.cn"})
    assert runner.invoke(app, ["keys", "rotate"]).exit_code == 0
    assert _states(cdp_env) == {1: "old", 2: "current"}
    assert runner.invoke(app, ["keys", "rewrap"]).exit_code == 0
    assert _states(cdp_env) == {1: "superseded", 2: "current"}
    shown = runner.invoke(app, ["keys", "status"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "superseded" in shown.output, shown.output
    assert runner.invoke(app, ["keys", "retire", "1"]).exit_code == 0
    assert _states(cdp_env) == {1: "retired", 2: "current"}
