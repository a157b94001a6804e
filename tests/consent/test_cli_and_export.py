"""``cdp consent show|grant|withdraw|export`` and the bulk export of consent state."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from cdp.audit.writer import LOG
from cdp.cli import app
from cdp.consent import export, ledger_state, service
from cdp.consent.purposes import PURPOSE_NAMES
from cdp.errors import InvalidInputError
from tests.audit.factories import make_principal
from tests.conftest import CdpEnv
from tests.factories import make_subject

runner = CliRunner()


def _dpo(env: CdpEnv) -> list[str]:
    token = make_principal(env.runtime, ["dpo"]).token
    return ["--token", token, "--purpose", "privacy_request"]


def test_withdraw_takes_the_same_arguments_as_grant(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt)
    auth = _dpo(cdp_env)
    args = [sid, "email_marketing", "--at", "2026-02-01T09:00:00+00:00", "--notice-version", "v7"]
    granted = runner.invoke(app, ["consent", "grant", *args, *auth])
    assert granted.exit_code == 0, granted.output
    later = [sid, "email_marketing", "--at", "2026-02-02T09:00:00+00:00", "--notice-version", "v7"]
    withdrawn = runner.invoke(app, ["consent", "withdraw", *later, *auth])
    assert withdrawn.exit_code == 0, withdrawn.output
    assert "current state: withdrawn" in withdrawn.output
    history = ledger_state.history(runtime=rt, subject_id=sid)
    assert [(h.status, h.mechanism, h.notice_version) for h in history] == [
        ("granted", "cli", "v7"),
        ("withdrawn", "cli", "v7"),
    ]
    shown = runner.invoke(app, ["consent", "show", sid, *auth], terminal_width=200)
    assert shown.exit_code == 0 and "History" in shown.output and "withdrawn" in shown.output


def test_consent_commands_need_a_permitted_principal(cdp_env: CdpEnv) -> None:
    sid = make_subject(cdp_env.runtime)
    analyst = make_principal(cdp_env.runtime, ["analyst"]).token
    result = runner.invoke(
        app, ["consent", "grant", sid, "analytics", "--token", analyst, "--purpose", "analytics"]
    )
    assert result.exit_code != 0
    assert ledger_state.history(runtime=cdp_env.runtime, subject_id=sid) == []


def test_bulk_export_csv_and_json_with_an_audit_record_per_batch(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    rt = cdp_env.runtime
    sids = sorted(make_subject(rt) for _ in range(5))
    from datetime import UTC, datetime

    service.record_consent(
        runtime=rt,
        subject_id=sids[2],
        purpose="sms_marketing",
        status="granted",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        source="app",
        mechanism="checkbox",
        recorded_by="app",
        notice_version="n1",
    )
    rows = list(export.iter_states(runtime=rt, batch_size=2))
    assert len(rows) == 5 * len(PURPOSE_NAMES)
    assert [r["subject_id"] for r in rows[:: len(PURPOSE_NAMES)]] == sids
    granted = [r for r in rows if r["status"] == "granted" and not r["is_default"]]
    assert granted == [
        {"subject_id": sids[2], "purpose": "sms_marketing", "status": "granted",
         "is_default": False, "occurred_at": "2026-01-01T00:00:00.000000Z", "source": "app",
         "mechanism": "checkbox", "notice_version": "n1"}
    ]  # fmt: skip
    buf = io.StringIO()
    assert export.write_json(buf, iter(rows)) == len(rows)
    assert json.loads(buf.getvalue()) == rows

    out = tmp_path / "consent.csv"
    auth = _dpo(cdp_env)
    result = runner.invoke(
        app, ["consent", "export", "--format", "csv", "-o", str(out), "--only", "sms_marketing",
              *auth],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    parsed = list(csv.DictReader(out.open()))
    assert [(r["subject_id"], r["status"]) for r in parsed] == [
        (s, "granted" if s == sids[2] else "withdrawn") for s in sids
    ]
    with rt.data_engine.connect() as conn:
        records = conn.execute(sa.select(LOG).where(LOG.c.action == "export")).all()
    assert sorted(s for r in records for s in json.loads(r.subject_ids)) == sids


def test_stored_text_that_looks_like_markup_prints_as_it_is(cdp_env: CdpEnv) -> None:
    """A consent source is the caller's text: ``[/x]`` in it must not crash or restyle the CLI
    (the ledger is append-only, so a crash would hide that proof of consent for good)."""
    rt = cdp_env.runtime
    sid = make_subject(rt)
    service.record_consent(
        runtime=rt,
        subject_id=sid,
        purpose="email_marketing",
        status="granted",
        occurred_at=datetime(2026, 2, 1, 9, 0, tzinfo=UTC),
        source="form[/x] [bold]y",
        mechanism="api",
        recorded_by="test",
    )
    shown = runner.invoke(app, ["consent", "show", sid, *_dpo(cdp_env)], terminal_width=250)
    assert shown.exit_code == 0, shown.output
    assert "form[/x]" in shown.output and "[bold]y" in shown.output  # (a cell may wrap)


@pytest.mark.parametrize(
    "at", ["0001-01-01T00:00:00+01:00", "1899-12-31T23:59:59+00:00", "0001-01-01T00:00:00Z"]
)
def test_a_choice_dated_before_1900_is_refused(cdp_env: CdpEnv, at: str) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt)
    result = runner.invoke(
        app, ["consent", "grant", sid, "email_marketing", "--at", at, *_dpo(cdp_env)]
    )
    # (``main`` maps a CdpError to exit 2: tests/cli/test_usage_errors.py)
    assert isinstance(result.exception, InvalidInputError), result.output
    assert "before 1900" in str(result.exception)
    with pytest.raises(InvalidInputError, match="before 1900"):
        service.record_consent(
            runtime=rt,
            subject_id=sid,
            purpose="email_marketing",
            status="granted",
            occurred_at=datetime.fromisoformat(at),
            source="test",
            mechanism="api",
            recorded_by="test",
        )
    assert ledger_state.history(runtime=rt, subject_id=sid) == []


def test_a_failed_consent_show_is_recorded(cdp_env: CdpEnv) -> None:
    """``cdp consent show`` for an id that names nobody fails, and the attempt is in the audit
    log as an ``error`` naming the id asked for, as the API's reads record theirs."""
    unknown = "0" * 32
    shown = runner.invoke(app, ["consent", "show", unknown, *_dpo(cdp_env)])
    assert shown.exit_code != 0
    with cdp_env.runtime.data_engine.connect() as conn:
        rows = conn.execute(
            sa.select(LOG.c.outcome, LOG.c.subject_ids).where(LOG.c.resource == "data:consent")
        ).all()
    assert [(r.outcome, json.loads(r.subject_ids)) for r in rows] == [("error", [unknown])]
