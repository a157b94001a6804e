"""A subject id that a merge absorbed names the same person: reading the profile (``GET
/v1/profiles/{id}``, ``cdp profiles show``), its orders (``GET /v1/profiles/{id}/orders``,
``cdp profiles orders``) or its traits (``GET /v1/profiles/{id}/traits``) by it answers the
survivor's, naming the survivor, and the audit record names the subject read. They used to answer
404. An erased id is still 404."""

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
from cdp.audit.writer import LOG
from cdp.cli import app
from cdp.privacy.erasure import erase_subject
from tests.audit.factories import make_orders, make_principal
from tests.conftest import CdpEnv
from tests.consent.test_absorbed_ids import _merged

runner = CliRunner()
START = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def client(cdp_env: CdpEnv) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


def _token(cdp_env: CdpEnv) -> str:
    return make_principal(cdp_env.runtime, ["dpo"]).token


def _headers(cdp_env: CdpEnv) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(cdp_env)}", "X-Purpose": "privacy_request"}


def _last_record(cdp_env: CdpEnv) -> sa.Row[tuple[object, ...]]:
    with cdp_env.runtime.data_engine.connect() as conn:
        return conn.execute(sa.select(LOG).order_by(LOG.c.seq.desc()).limit(1)).one()


def test_profile_by_an_absorbed_id_reads_the_survivor(
    cdp_env: CdpEnv, client: TestClient, tmp_path: Path
) -> None:
    survivor, absorbed = _merged(cdp_env.runtime, tmp_path)
    make_orders(cdp_env.runtime, survivor, 2, start=START)
    headers = _headers(cdp_env)
    direct = client.get(f"/v1/profiles/{survivor}", headers=headers)
    r = client.get(f"/v1/profiles/{absorbed}", headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == direct.json()
    assert r.json()["subject_id"] == survivor and r.json()["orders"]["count"] == 2
    row = _last_record(cdp_env)
    assert (row.action, row.resource, row.outcome) == ("read", "profile", "allowed")
    assert json.loads(row.subject_ids) == [absorbed, survivor]


def test_orders_by_an_absorbed_id_read_the_survivor(
    cdp_env: CdpEnv, client: TestClient, tmp_path: Path
) -> None:
    survivor, absorbed = _merged(cdp_env.runtime, tmp_path)
    refs = make_orders(cdp_env.runtime, survivor, 3, start=START)
    r = client.get(f"/v1/profiles/{absorbed}/orders", headers=_headers(cdp_env))
    assert r.status_code == 200, r.text
    assert r.json()["subject_id"] == survivor
    assert [o["order_ref"] for o in r.json()["items"]] == refs
    row = _last_record(cdp_env)
    assert (row.action, row.resource) == ("list", "profile.orders")
    assert json.loads(row.subject_ids) == [survivor]


def test_cli_profile_and_orders_by_an_absorbed_id(cdp_env: CdpEnv, tmp_path: Path) -> None:
    survivor, absorbed = _merged(cdp_env.runtime, tmp_path)
    make_orders(cdp_env.runtime, survivor, 1, start=START)
    auth = ["--token", _token(cdp_env), "--purpose", "privacy_request"]
    shown = runner.invoke(app, ["profiles", "show", absorbed, *auth])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["subject_id"] == survivor
    orders = runner.invoke(app, ["profiles", "orders", absorbed, *auth])
    assert orders.exit_code == 0, orders.output
    page = json.loads(orders.output)
    assert page["subject_id"] == survivor and len(page["items"]) == 1


def test_an_id_absorbed_by_an_erased_subject_is_not_found(
    cdp_env: CdpEnv, client: TestClient, tmp_path: Path
) -> None:
    survivor, absorbed = _merged(cdp_env.runtime, tmp_path)
    erase_subject(runtime=cdp_env.runtime, subject_id=survivor)
    headers = _headers(cdp_env)
    for suffix in ("", "/orders", "/traits"):
        path = f"/v1/profiles/{absorbed}{suffix}"
        r = client.get(path, headers=headers)
        assert r.status_code == 404, (path, r.text)


def test_traits_by_an_absorbed_id_read_the_survivor(
    cdp_env: CdpEnv, client: TestClient, tmp_path: Path
) -> None:
    survivor, absorbed = _merged(cdp_env.runtime, tmp_path)
    r = client.get(f"/v1/profiles/{absorbed}/traits", headers=_headers(cdp_env))
    assert r.status_code == 200, r.text
    assert r.json()["subject_id"] == survivor
    row = _last_record(cdp_env)
    assert (row.action, row.resource) == ("read", "data:traits")
    assert json.loads(row.subject_ids) == [absorbed, survivor]
