"""N reads through the API and the CLI make exactly N records; no audit record and no log line
carries the test data's emails, phones or names."""

from __future__ import annotations

import json

import sqlalchemy as sa
from fastapi.testclient import TestClient
from structlog.testing import capture_logs
from typer.testing import CliRunner

from cdp.api.app import create_app
from cdp.audit.verify import verify_chain
from cdp.audit.writer import LOG, SUBJECTS
from cdp.cli import app
from tests.audit.factories import make_consent, make_orders, make_principal
from tests.conftest import CdpEnv
from tests.factories import make_subject

PEOPLE = [
    {
        "email": "zoe.quintana@example.org",
        "phone": "+442071838750",
        "first_name": "Zoe",
        "last_name": "Quintana",
        "city": "Brighton",
    },
    {
        "email": "li.wei@example.cn",
        "phone": "+8613800138000",
        "first_name": "Wei",
        "last_name": "Lijun",
        "city": "Hangzhou",
    },
]


def _seed(env: CdpEnv) -> list[str]:
    from datetime import UTC, datetime

    ids = []
    for person in PEOPLE:
        sid = make_subject(
            env.runtime, person, {"email": person["email"], "phone": person["phone"]}
        )
        make_orders(env.runtime, sid, 2, start=datetime(2026, 1, 1, tzinfo=UTC))
        make_consent(
            env.runtime, sid, "email_marketing", "granted", at=datetime(2026, 1, 1, tzinfo=UTC)
        )
        ids.append(sid)
    return ids


def _dump(env: CdpEnv) -> tuple[list[sa.Row[tuple[object, ...]]], str]:
    with env.runtime.data_engine.connect() as conn:
        rows = list(conn.execute(sa.select(LOG).order_by(LOG.c.seq)).all())
        links = conn.execute(sa.select(SUBJECTS)).all()
    return rows, repr(rows) + repr(links)


def _assert_no_pii(text: str) -> None:
    lowered = text.lower()
    for person in PEOPLE:
        for value in person.values():
            assert value.lower() not in lowered, "personal data leaked"
        assert person["phone"].lstrip("+") not in lowered


def test_every_door_records_each_read_and_nothing_personal(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    ids = _seed(cdp_env)
    support = make_principal(rt, ["support"])
    dpo = make_principal(rt, ["dpo"])
    analyst = make_principal(rt, ["analyst"])
    h_support = {"Authorization": f"Bearer {support.token}", "X-Purpose": "support"}
    h_dpo = {"Authorization": f"Bearer {dpo.token}", "X-Purpose": "privacy_request"}
    h_analyst = {"Authorization": f"Bearer {analyst.token}", "X-Purpose": "analytics"}
    expected = 0
    with capture_logs() as logs, TestClient(create_app()) as client:
        for sid, person in zip(ids, PEOPLE, strict=True):
            for url, headers, status in (
                (f"/v1/profiles/{sid}", h_support, 200),
                (f"/v1/profiles/{sid}", h_dpo, 200),
                (f"/v1/profiles/{sid}?fields=first_name", h_analyst, 403),
                (f"/v1/profiles?email={person['email']}", h_support, 200),
                (f"/v1/profiles?phone={person['phone']}", h_analyst, 403),
                (f"/v1/profiles/{sid}/orders", h_dpo, 200),
                (f"/v1/profiles/{sid}/consent", h_dpo, 200),
            ):
                r = client.get(url, headers=headers)
                assert r.status_code == status, r.text
                expected += 1
        runner = CliRunner()
        for sid, person in zip(ids, PEOPLE, strict=True):
            for args in (
                ["profiles", "show", sid, "--purpose", "support", "--token", support.token],
                [
                    "profiles",
                    "find",
                    "--email",
                    person["email"],
                    "--purpose",
                    "support",
                    "--token",
                    support.token,
                ],
                ["profiles", "orders", sid, "--purpose", "privacy_request", "--token", dpo.token],
                ["profiles", "consent", sid, "--purpose", "privacy_request", "--token", dpo.token],
                [
                    "profiles",
                    "show",
                    sid,
                    "--purpose",
                    "analytics",
                    "--fields",
                    "email",
                    "--token",
                    analyst.token,
                ],
            ):
                result = runner.invoke(app, args)
                expected += 1
                if args[-1] == analyst.token:
                    assert result.exit_code != 0
                else:
                    assert result.exit_code == 0, result.output
                    assert person["email"] in result.output or "items" in result.output
    rows, dump = _dump(cdp_env)
    assert len(rows) == expected
    assert verify_chain(runtime=rt).ok
    for row in rows:
        assert row.outcome in ("allowed", "denied")
        assert row.request_id and row.client and row.purpose and row.principal_name
        if not row.action.startswith("lookup") and row.resource != "pii:contact":
            assert json.loads(row.subject_ids)
    clients = {row.client for row in rows}
    # Starlette's test client calls its peer "testclient", which is no address: recorded so
    assert "invalid" in clients and any(c.startswith("cli:") for c in clients)
    _assert_no_pii(dump)
    assert any(entry.get("event") == "request" for entry in logs)
    _assert_no_pii(json.dumps(logs, default=str))


def test_the_cli_pages_within_the_apis_bounds(cdp_env: CdpEnv) -> None:
    """``--limit 500`` was silently cut to 200 (the API answers 422) and a cursor past 2**63
    crashed with an internal error after an ``error`` audit record (on PostgreSQL any cursor past
    the ids' 32 bits did). Both are usage errors now,
    refused before anything is read or recorded."""
    sid = make_subject(cdp_env.runtime, {"email": "pager@example.org"})
    dpo = make_principal(cdp_env.runtime, ["dpo"])
    runner = CliRunner()
    for command in ("orders", "consent"):
        for extra in (["--limit", "500"], ["--limit", "0"], ["--cursor", str(2**31)]):
            args = ["profiles", command, sid, "--purpose", "privacy_request", "--token", dpo.token]
            result = runner.invoke(app, [*args, *extra])
            assert result.exit_code == 2, (command, extra, result.output)
        ok = runner.invoke(app, [*args, "--limit", "200", "--cursor", str(2**31 - 1)])
        assert ok.exit_code == 0, ok.output
    rows, _ = _dump(cdp_env)
    assert [r.outcome for r in rows] == ["allowed", "allowed"]
