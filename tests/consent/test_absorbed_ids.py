"""A subject id that a merge absorbed names the same person: recording a choice by it (``POST
/v1/consent``, ``cdp consent grant|withdraw``, the service) or reading its consent (``GET
/v1/profiles/{id}/consent``, ``cdp consent show``, ``cdp profiles consent``) reaches the survivor,
and the answer names the survivor. It used to answer 404. An erased id is still refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cdp.api.app import create_app
from cdp.cli import app
from cdp.consent import ledger_state, service
from cdp.crypto.normalize import IdentityKind
from cdp.db.models import Identity
from cdp.errors import NotFoundError
from cdp.ingest.pipeline import ingest_file
from cdp.privacy.erasure import erase_subject
from cdp.runtime import Runtime
from tests.audit.factories import make_principal
from tests.conftest import CdpEnv
from tests.ingest.helpers import write_csv

HEADER = ["customer_id", "email", "first_name"]
runner = CliRunner()


def _holder(rt: Runtime, customer_id: str) -> str:
    token = rt.tokenizer.token(IdentityKind.CUSTOMER_ID, customer_id).value
    with rt.data_engine.connect() as conn:
        sid = conn.execute(
            sa.select(Identity.subject_id).where(  # type: ignore[call-overload]
                Identity.kind == "customer_id", Identity.token == token
            )
        ).scalar_one()
    return str(sid)


def _merged(rt: Runtime, tmp: Path) -> tuple[str, str]:
    """Two customers stored apart, then one file shows them to be one person: (survivor,
    absorbed id)."""
    ingest_file(
        runtime=rt, kind="customers", path=write_csv(tmp / "a.csv", [{"customer_id": "A1"}], HEADER)
    )
    survivor = _holder(rt, "A1")
    ingest_file(
        runtime=rt, kind="customers", path=write_csv(tmp / "b.csv", [{"customer_id": "B1"}], HEADER)
    )
    absorbed = _holder(rt, "B1")
    link = [
        {"customer_id": "A1", "email": "ann@example.com"},
        {"customer_id": "B1", "email": "ann@example.com"},
    ]
    s = ingest_file(runtime=rt, kind="customers", path=write_csv(tmp / "l.csv", link, HEADER))
    assert s.merges == 1 and _holder(rt, "B1") == survivor != absorbed
    return survivor, absorbed


@pytest.fixture
def client(cdp_env: CdpEnv) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


def _headers(cdp_env: CdpEnv) -> dict[str, str]:
    token = make_principal(cdp_env.runtime, ["dpo"]).token
    return {"Authorization": f"Bearer {token}", "X-Purpose": "privacy_request"}


def _cli_auth(cdp_env: CdpEnv) -> list[str]:
    token = make_principal(cdp_env.runtime, ["dpo"]).token
    return ["--token", token, "--purpose", "privacy_request"]


def _withdraw(subject_id: str) -> dict[str, str]:
    return {"subject_id": subject_id, "purpose": "email_marketing", "status": "withdrawn"}


def test_the_api_records_and_reads_consent_by_an_absorbed_id(
    cdp_env: CdpEnv, client: TestClient, tmp_path: Path
) -> None:
    rt = cdp_env.runtime
    survivor, absorbed = _merged(rt, tmp_path)
    headers = _headers(cdp_env)
    r = client.post("/v1/consent", json=_withdraw(absorbed), headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["subject_id"] == survivor and body["recorded"] is True
    assert body["state"]["status"] == "withdrawn"
    assert [h.status for h in ledger_state.history(runtime=rt, subject_id=survivor)] == [
        "withdrawn"
    ]
    page = client.get(f"/v1/profiles/{absorbed}/consent", headers=headers)
    assert page.status_code == 200, page.text
    assert page.json()["subject_id"] == survivor
    assert [i["status"] for i in page.json()["items"]] == ["withdrawn"]
    own = client.get(f"/v1/profiles/{survivor}/consent", headers=headers).json()
    assert own["subject_id"] == survivor and own["items"] == page.json()["items"]


def test_the_cli_and_the_service_follow_an_absorbed_id(cdp_env: CdpEnv, tmp_path: Path) -> None:
    rt = cdp_env.runtime
    survivor, absorbed = _merged(rt, tmp_path)
    auth = _cli_auth(cdp_env)
    at = ["--at", "2026-02-01T09:00:00+00:00"]
    granted = runner.invoke(app, ["consent", "grant", absorbed, "email_marketing", *at, *auth])
    assert granted.exit_code == 0, granted.output
    assert survivor in granted.output and "current state: granted" in granted.output
    assert ledger_state.has_consent(runtime=rt, subject_id=survivor, purpose="email_marketing")
    shown = runner.invoke(app, ["consent", "show", absorbed, *auth], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    assert survivor in shown.output and "granted" in shown.output
    page = runner.invoke(app, ["profiles", "consent", absorbed, *auth])
    assert page.exit_code == 0, page.output
    assert json.loads(page.output)["subject_id"] == survivor
    assert service.record_consent(
        runtime=rt,
        subject_id=absorbed,
        purpose="email_marketing",
        status="withdrawn",
        occurred_at=datetime(2026, 2, 2, tzinfo=UTC),
        source="cmp",
        mechanism="api",
        recorded_by="test",
    )
    assert not ledger_state.has_consent(runtime=rt, subject_id=survivor, purpose="email_marketing")
    assert ledger_state.consent_proof(runtime=rt, subject_id=absorbed).subject_id == survivor


def test_an_erased_id_is_still_refused_by_every_door(
    cdp_env: CdpEnv, client: TestClient, tmp_path: Path
) -> None:
    rt = cdp_env.runtime
    survivor, absorbed = _merged(rt, tmp_path)
    ingest_file(
        runtime=rt,
        kind="customers",
        path=write_csv(tmp_path / "c.csv", [{"customer_id": "C1"}], HEADER),
    )
    other = _holder(rt, "C1")
    erase_subject(runtime=rt, subject_id=other)
    erase_subject(runtime=rt, subject_id=survivor)  # the absorbed id goes with its survivor
    headers = _headers(cdp_env)
    auth = _cli_auth(cdp_env)
    for gone in (other, survivor, absorbed):
        r = client.post("/v1/consent", json=_withdraw(gone), headers=headers)
        assert r.status_code == 404, r.text
        assert client.get(f"/v1/profiles/{gone}/consent", headers=headers).status_code == 404
        cli = runner.invoke(app, ["consent", "withdraw", gone, "email_marketing", *auth])
        assert isinstance(cli.exception, NotFoundError), cli.output  # exit 2 from main()
        with pytest.raises(NotFoundError):
            ledger_state.consent_proof(runtime=rt, subject_id=gone)
    with rt.data_engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM consent_events").scalar_one() == 0
