"""GET /v1/profiles...: field-level views per role and purpose, denials, lookups, audit records."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cdp.api.app import create_app
from cdp.audit.writer import LOG
from tests.audit.factories import make_consent, make_orders, make_principal
from tests.conftest import CdpEnv
from tests.factories import make_subject

PII = {
    "email": "Alice.Liddell@example.com",
    "phone": "+14155550123",
    "first_name": "Alice",
    "last_name": "Liddell",
    "city": "Oxford",
}
START = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def client(cdp_env: CdpEnv) -> Iterator[TestClient]:
    with TestClient(create_app()) as c:
        yield c


def _subject(env: CdpEnv) -> str:
    return make_subject(
        env.runtime,
        PII,
        identities={"email": PII["email"], "phone": PII["phone"], "customer_id": "C-1001"},
    )


def _headers(env: CdpEnv, role: str, purpose: str) -> dict[str, str]:
    made = make_principal(env.runtime, [role])
    return {"Authorization": f"Bearer {made.token}", "X-Purpose": purpose}


def _audit(env: CdpEnv) -> list[sa.Row[tuple[object, ...]]]:
    with env.runtime.data_engine.connect() as conn:
        return list(conn.execute(sa.select(LOG).order_by(LOG.c.seq)).all())


def test_support_sees_contact_only(cdp_env: CdpEnv, client: TestClient) -> None:
    sid = _subject(cdp_env)
    r = client.get(f"/v1/profiles/{sid}", headers=_headers(cdp_env, "support", "support"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["email"] == PII["email"] and body["phone"] == PII["phone"]
    assert set(body) == {"subject_id", "created_at", "identity_kinds", "email", "phone"}
    assert body["identity_kinds"] == ["customer_id", "email", "phone"]
    (row,) = _audit(cdp_env)
    assert (row.outcome, row.action, row.resource, row.purpose) == (
        "allowed",
        "read",
        "profile",
        "support",
    )
    assert json.loads(row.subject_ids) == [sid]
    assert set(json.loads(row.fields)) == set(body)


def test_analyst_gets_pseudonymous_profile_and_no_placeholders(
    cdp_env: CdpEnv, client: TestClient
) -> None:
    sid = _subject(cdp_env)
    make_orders(cdp_env.runtime, sid, 3, start=START)
    r = client.get(f"/v1/profiles/{sid}", headers=_headers(cdp_env, "analyst", "analytics"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"subject_id", "created_at", "identity_kinds", "orders"}
    assert body["orders"]["count"] == 3
    # whether the person has an email or a phone is contact data too: only the pseudonymous kinds
    assert body["identity_kinds"] == ["customer_id"]
    for value in PII.values():
        assert value not in r.text
    # asking for the kinds alone shows the same
    r = client.get(
        f"/v1/profiles/{sid}?fields=identity_kinds",
        headers=_headers(cdp_env, "analyst", "analytics"),
    )
    assert r.json()["identity_kinds"] == ["customer_id"]


def test_analyst_asking_for_pii_is_denied_and_recorded(cdp_env: CdpEnv, client: TestClient) -> None:
    sid = _subject(cdp_env)
    headers = _headers(cdp_env, "analyst", "analytics")
    r = client.get(f"/v1/profiles/{sid}?fields=email", headers=headers)
    assert r.status_code == 403
    assert PII["email"] not in r.text
    (row,) = _audit(cdp_env)
    assert (row.outcome, row.resource, row.roles) == ("denied", "pii:contact", "analyst")
    assert json.loads(row.subject_ids) == [sid] and json.loads(row.fields) == []
    r = client.get(f"/v1/profiles?email={PII['email']}", headers=headers)
    assert r.status_code == 403
    assert _audit(cdp_env)[-1].outcome == "denied"


def test_support_with_wrong_purpose_is_denied(cdp_env: CdpEnv, client: TestClient) -> None:
    sid = _subject(cdp_env)
    r = client.get(f"/v1/profiles/{sid}", headers=_headers(cdp_env, "support", "marketing"))
    assert r.status_code == 403
    assert _audit(cdp_env)[0].outcome == "denied"


def test_dpo_serving_a_request_sees_every_category(cdp_env: CdpEnv, client: TestClient) -> None:
    sid = _subject(cdp_env)
    r = client.get(f"/v1/profiles/{sid}", headers=_headers(cdp_env, "dpo", "privacy_request"))
    assert r.status_code == 200
    body = r.json()
    for field, value in PII.items():
        assert body[field] == value


def test_field_selection_returns_only_those_fields(cdp_env: CdpEnv, client: TestClient) -> None:
    sid = _subject(cdp_env)
    r = client.get(
        f"/v1/profiles/{sid}?fields=email", headers=_headers(cdp_env, "support", "support")
    )
    assert r.json() == {"subject_id": sid, "email": PII["email"]}
    assert sorted(json.loads(_audit(cdp_env)[0].fields)) == ["email", "subject_id"]
    r = client.get(
        f"/v1/profiles/{sid}?fields=shoe_size", headers=_headers(cdp_env, "support", "support")
    )
    assert r.status_code == 422


@pytest.mark.parametrize(
    ("query", "kind"),
    [
        ("email=%20alice.liddell@EXAMPLE.com", "email"),
        ("phone=%2B1%20415%20555%200123", "phone"),
        ("customer_id=C-1001", "customer_id"),
    ],
)
def test_lookup_through_token_index(
    cdp_env: CdpEnv, client: TestClient, query: str, kind: str
) -> None:
    sid = _subject(cdp_env)
    make_subject(cdp_env.runtime, {"email": "other@example.com"}, {"email": "other@example.com"})
    r = client.get(f"/v1/profiles?{query}", headers=_headers(cdp_env, "support", "support"))
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["subject_id"] for i in items] == [sid]
    (row,) = _audit(cdp_env)
    assert row.action == f"lookup:{kind}" and json.loads(row.subject_ids) == [sid]
    assert "alice" not in repr(tuple(row)).lower() and "C-1001" not in repr(tuple(row))


def test_lookup_needs_exactly_one_identity(cdp_env: CdpEnv, client: TestClient) -> None:
    headers = _headers(cdp_env, "support", "support")
    assert client.get("/v1/profiles", headers=headers).status_code == 422
    assert client.get("/v1/profiles?email=a@b.co&phone=1", headers=headers).status_code == 422
    r = client.get("/v1/profiles?email=nobody@example.com", headers=headers)
    assert r.status_code == 200 and r.json() == {"items": []}


def test_unknown_subject_is_404_and_recorded_as_error(cdp_env: CdpEnv, client: TestClient) -> None:
    sid = "0" * 32
    r = client.get(f"/v1/profiles/{sid}", headers=_headers(cdp_env, "support", "support"))
    assert r.status_code == 404
    (row,) = _audit(cdp_env)
    assert row.outcome == "error" and json.loads(row.subject_ids) == [sid]


def test_orders_are_paginated_with_a_hard_maximum(cdp_env: CdpEnv, client: TestClient) -> None:
    sid = _subject(cdp_env)
    refs = make_orders(cdp_env.runtime, sid, 205, start=START)
    headers = _headers(cdp_env, "analyst", "analytics")
    assert client.get(f"/v1/profiles/{sid}/orders?limit=1000", headers=headers).status_code == 422
    r = client.get(f"/v1/profiles/{sid}/orders?limit=200", headers=headers)
    assert r.status_code == 200
    page = r.json()
    assert len(page["items"]) == 200 and page["next_cursor"] is not None
    r = client.get(
        f"/v1/profiles/{sid}/orders?limit=200&cursor={page['next_cursor']}", headers=headers
    )
    rest = r.json()
    assert rest["next_cursor"] is None
    assert [o["order_ref"] for o in page["items"] + rest["items"]] == refs
    rows = _audit(cdp_env)
    assert [(x.action, x.resource) for x in rows] == [("list", "profile.orders")] * 2


def test_consent_lists_the_ledger(cdp_env: CdpEnv, client: TestClient) -> None:
    sid = _subject(cdp_env)
    make_consent(cdp_env.runtime, sid, "email_marketing", "granted", at=START)
    r = client.get(f"/v1/profiles/{sid}/consent", headers=_headers(cdp_env, "dpo", "audit"))
    assert r.status_code == 200, r.text
    assert [(c["purpose"], c["status"]) for c in r.json()["items"]] == [
        ("email_marketing", "granted")
    ]
    r = client.get(f"/v1/profiles/{sid}/consent", headers=_headers(cdp_env, "analyst", "analytics"))
    assert r.status_code == 403


def test_failed_audit_write_returns_503_and_no_data(
    cdp_env: CdpEnv, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = _subject(cdp_env)
    headers = _headers(cdp_env, "support", "support")
    import cdp.audit.service as service

    def broken(*_a: object, **_k: object) -> None:
        raise sa.exc.OperationalError("INSERT INTO audit_log", {}, Exception("disk I/O error"))

    monkeypatch.setattr(service, "append", broken)
    r = client.get(f"/v1/profiles/{sid}", headers=headers)
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "audit_unavailable"
    for value in PII.values():
        assert value not in r.text
    assert _audit(cdp_env) == []


def test_n_reads_make_n_records(cdp_env: CdpEnv, client: TestClient) -> None:
    sid = _subject(cdp_env)
    headers = _headers(cdp_env, "support", "support")
    for _ in range(7):
        assert client.get(f"/v1/profiles/{sid}", headers=headers).status_code == 200
    rows = _audit(cdp_env)
    assert [r.seq for r in rows] == list(range(1, 8))
    assert len({r.request_id for r in rows}) == 7


def test_a_cursor_past_the_ids_is_refused_not_a_500(cdp_env: CdpEnv, client: TestClient) -> None:
    """Order and consent ids are 32-bit integers; on PostgreSQL a larger cursor could not even be
    compared with them (a 500). It is a 422 on every engine now; the largest id still pages."""
    sid = _subject(cdp_env)
    headers = _headers(cdp_env, "dpo", "privacy_request")
    for path in (f"/v1/profiles/{sid}/orders", f"/v1/profiles/{sid}/consent"):
        assert client.get(path, params={"cursor": 2**31}, headers=headers).status_code == 422
        r = client.get(path, params={"cursor": 2**31 - 1}, headers=headers)
        assert r.status_code == 200 and r.json()["items"] == []
