"""POST /v1/consent and /v1/privacy-requests over HTTP: shapes, permissions, audited downloads."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cdp.api.app import create_app
from cdp.audit.writer import LOG
from cdp.consent import ledger_state
from cdp.ingest.sources import create_source
from cdp.privacy import access_package
from tests.audit.factories import make_principal
from tests.conftest import CdpEnv
from tests.factories import make_subject


@pytest.fixture
def client(cdp_env: CdpEnv) -> Iterator[TestClient]:
    with TestClient(create_app()) as c:
        yield c


def _headers(env: CdpEnv, role: str, purpose: str) -> dict[str, str]:
    made = make_principal(env.runtime, [role])
    return {"Authorization": f"Bearer {made.token}", "X-Purpose": purpose}


def test_withdrawing_is_the_same_request_as_granting(cdp_env: CdpEnv, client: TestClient) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt, identities={"email": "pref@example.org"})
    headers = _headers(cdp_env, "dpo", "privacy_request")
    grant = {
        "email": "pref@example.org",
        "purpose": "sms_marketing",
        "status": "granted",
        "occurred_at": "2026-05-01T10:00:00Z",
        "mechanism": "checkbox",
        "source": "prefs",
        "notice_version": "2026-04",
    }
    r = client.post("/v1/consent", json=grant, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["subject_id"] == sid and r.json()["state"]["status"] == "granted"
    assert r.json()["recorded"] is True
    replay = client.post("/v1/consent", json=grant, headers=headers)
    assert replay.json()["recorded"] is False
    withdraw = {**grant, "status": "withdrawn", "occurred_at": "2026-05-02T10:00:00Z"}
    r = client.post("/v1/consent", json=withdraw, headers=headers)
    assert r.status_code == 200 and r.json()["state"]["status"] == "withdrawn"
    history = ledger_state.history(runtime=rt, subject_id=sid)
    assert [(h.status, h.recorded_by != "", h.notice_version) for h in history] == [
        ("granted", True, "2026-04"),
        ("withdrawn", True, "2026-04"),
    ]


def test_consent_input_is_validated_without_echoing_values(
    cdp_env: CdpEnv, client: TestClient
) -> None:
    headers = _headers(cdp_env, "dpo", "privacy_request")
    body = {"email": "nobody@example.org", "purpose": "sms_marketing", "status": "granted"}
    r = client.post("/v1/consent", json=body, headers=headers)
    assert r.status_code == 404 and "nobody@example.org" not in r.text
    sid = make_subject(cdp_env.runtime)
    r = client.post(
        "/v1/consent",
        json={"subject_id": sid, "purpose": "mind_reading", "status": "granted"},
        headers=headers,
    )
    assert r.status_code == 422 and "mind_reading" not in r.text
    r = client.post(
        "/v1/consent",
        json={
            "subject_id": sid,
            "email": "x@example.org",
            "purpose": "analytics",
            "status": "granted",
        },
        headers=headers,
    )
    assert r.status_code == 422
    analyst = _headers(cdp_env, "analyst", "analytics")
    r = client.post(
        "/v1/consent",
        json={"subject_id": sid, "purpose": "analytics", "status": "withdrawn"},
        headers=analyst,
    )
    assert r.status_code == 403


def test_privacy_request_lifecycle_over_http(cdp_env: CdpEnv, client: TestClient) -> None:
    rt = cdp_env.runtime
    sid = make_subject(
        rt,
        pii={"email": "api@example.org", "first_name": "Ada"},
        identities={"email": "api@example.org"},
    )
    dpo = _headers(cdp_env, "dpo", "privacy_request")
    r = client.post(
        "/v1/privacy-requests",
        json={"type": "access", "identity": {"email": "API@example.org"}},
        headers=dpo,
    )
    assert r.status_code == 201, r.text
    req = r.json()
    assert req["status"] == "received" and req["subject_id"] == sid
    assert "api@example.org" not in r.text.lower()
    rid = req["id"]
    assert client.post(f"/v1/privacy-requests/{rid}/run", headers=dpo).status_code == 409
    assert (
        client.post(f"/v1/privacy-requests/{rid}/verify", json={}, headers=dpo).status_code == 200
    )
    r = client.post(f"/v1/privacy-requests/{rid}/run", headers=dpo)
    assert r.status_code == 200 and r.json()["status"] == "completed"
    assert (
        client.get(f"/v1/privacy-requests/{rid}", headers=dpo).json()["steps"][-1]["status"]
        == "completed"
    )
    listed = client.get("/v1/privacy-requests?status=completed", headers=dpo).json()["items"]
    assert [x["id"] for x in listed] == [rid]
    for odd in ("", "nope"):  # refused by the schema, which lists the statuses
        r = client.get("/v1/privacy-requests", params={"status": odd}, headers=dpo)
        assert r.status_code == 422 and r.json()["error"]["details"][0]["loc"] == "query.status"
    statuses = client.app.openapi()["components"]["schemas"]["RequestStatus"]  # type: ignore[attr-defined]
    assert "completed" in statuses["enum"]
    # an empty identity names nobody: the schema says so (minLength), and it is a 422
    identity = client.app.openapi()["components"]["schemas"]["Identity"]["properties"]  # type: ignore[attr-defined]
    assert all(p["anyOf"][0]["minLength"] == 1 for p in identity.values())
    empty = {"type": "access", "identity": {"email": "", "phone": "", "customer_id": ""}}
    r = client.post("/v1/privacy-requests", json=empty, headers=dpo)
    assert r.status_code == 422
    assert {d["loc"] for d in r.json()["error"]["details"]} == {
        "body.identity.email",
        "body.identity.phone",
        "body.identity.customer_id",
    }

    r = client.get(f"/v1/privacy-requests/{rid}/package", headers=dpo)
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    data = r.json()
    access_package.validate(data)
    assert data["personal_data"] == {"email": "api@example.org", "first_name": "Ada"}
    html = client.get(f"/v1/privacy-requests/{rid}/package?format=html", headers=dpo)
    assert html.status_code == 200 and "Ada" in html.text
    assert html.headers["content-type"].startswith("text/html")

    # support may not read packages; the attempt is denied and recorded
    support = _headers(cdp_env, "support", "support")
    assert client.get(f"/v1/privacy-requests/{rid}/package", headers=support).status_code == 403
    with rt.data_engine.connect() as conn:
        rows = conn.execute(sa.select(LOG).order_by(LOG.c.seq)).all()
    downloads = [
        r
        for r in rows
        if r.resource == "privacy_requests" and r.outcome == "allowed" and json.loads(r.fields)
    ]
    assert len(downloads) == 2
    assert all(
        json.loads(r.subject_ids) == [sid] and r.purpose == "privacy_request" for r in downloads
    )
    assert rows[-1].outcome == "denied"


def test_extension_and_rejection_over_http(cdp_env: CdpEnv, client: TestClient) -> None:
    dpo = _headers(cdp_env, "dpo", "privacy_request")
    rid = client.post(
        "/v1/privacy-requests",
        json={"type": "erasure", "identity": {"customer_id": "C-404"}},
        headers=dpo,
    ).json()["id"]
    r = client.post(
        f"/v1/privacy-requests/{rid}/extend", json={"reason": "volume", "months": 2}, headers=dpo
    )
    assert r.status_code == 200 and r.json()["deadline"] > r.json()["due_at"]
    again = client.post(f"/v1/privacy-requests/{rid}/extend", json={"reason": "x"}, headers=dpo)
    assert again.status_code == 409
    for path, body in (("extend", {"reason": "x\u0000"}), ("reject", {"reason": "no\u0000"})):
        nul = client.post(f"/v1/privacy-requests/{rid}/{path}", json=body, headers=dpo)
        assert nul.status_code == 422 and "NUL" in nul.text  # PostgreSQL text cannot hold it
    r = client.post(
        f"/v1/privacy-requests/{rid}/reject", json={"reason": "unverified"}, headers=dpo
    )
    assert r.json()["status"] == "rejected"
    bad = client.post(
        "/v1/privacy-requests",
        json={"type": "access", "identity": {"email": "a@b.org", "phone": "+14155550100"}},
        headers=dpo,
    )
    assert bad.status_code == 422


def test_a_package_holding_a_lone_surrogate_downloads_as_valid_utf8(
    cdp_env: CdpEnv, client: TestClient
) -> None:
    rt = cdp_env.runtime
    key = create_source(runtime=rt, name="web").write_key
    event = b'{"type":"track","userId":"surr-1","event":"Noted","properties":{"note":"\\ud800x"}}'
    r = client.post("/v1/track", content=event, auth=(key, ""))
    assert r.status_code == 200, r.text
    dpo = _headers(cdp_env, "dpo", "privacy_request")
    body = {"type": "access", "identity": {"customer_id": "surr-1"}}
    rid = client.post("/v1/privacy-requests", json=body, headers=dpo).json()["id"]
    assert client.post(f"/v1/privacy-requests/{rid}/verify", json={}, headers=dpo).is_success
    assert client.post(f"/v1/privacy-requests/{rid}/run", headers=dpo).status_code == 200
    r = client.get(f"/v1/privacy-requests/{rid}/package?format=json", headers=dpo)
    assert r.status_code == 200, r.text
    r.content.decode("utf-8")  # valid UTF-8
    notes = [e["properties"]["note"] for e in r.json()["events"]]
    assert notes == ["\ud800x"]  # the escape reads back as what was sent
    html = client.get(f"/v1/privacy-requests/{rid}/package?format=html", headers=dpo)
    assert html.status_code == 200


def test_filing_a_request_audits_the_identity_lookup_like_a_profile_lookup(
    cdp_env: CdpEnv, client: TestClient
) -> None:
    rt = cdp_env.runtime
    sid = make_subject(
        rt, pii={"email": "look@example.org"}, identities={"email": "look@example.org"}
    )
    dpo = _headers(cdp_env, "dpo", "privacy_request")

    def records() -> list[tuple[str, str, list[str], str, str]]:
        with rt.data_engine.connect() as conn:
            rows = conn.execute(sa.select(LOG).where(LOG.c.action.like("lookup:%"))).all()
        return [
            (r.action, r.resource, json.loads(r.subject_ids), r.purpose, r.outcome) for r in rows
        ]

    looked = client.get("/v1/profiles?email=look@example.org&fields=email", headers=dpo)
    assert looked.status_code == 200, looked.text
    assert records() == [("lookup:email", "profile", [sid], "privacy_request", "allowed")]
    body = {"type": "access", "identity": {"email": "LOOK@example.org"}}
    r = client.post("/v1/privacy-requests", json=body, headers=dpo)
    assert r.status_code == 201 and r.json()["subject_id"] == sid
    assert records()[1:] == [("lookup:email", "profile", [sid], "privacy_request", "allowed")]
    unknown = {"type": "access", "identity": {"phone": "+14155550199"}}
    assert client.post("/v1/privacy-requests", json=unknown, headers=dpo).status_code == 201
    assert records()[2:] == [("lookup:phone", "profile", [], "privacy_request", "allowed")]


def test_consent_by_email_records_its_lookup_found_or_not(
    cdp_env: CdpEnv, client: TestClient
) -> None:
    """Naming the person by email tells the caller whether someone holds it: the lookup is a
    read of contact data, audited as ``lookup:email`` whether or not anyone was found."""
    rt = cdp_env.runtime
    sid = make_subject(rt, identities={"email": "lookup.me@example.org"})
    headers = _headers(cdp_env, "dpo", "privacy_request")
    for email, status in (("lookup.me@example.org", 200), ("nobody@example.org", 404)):
        body = {"email": email, "purpose": "sms_marketing", "status": "withdrawn"}
        assert client.post("/v1/consent", json=body, headers=headers).status_code == status
    with rt.data_engine.connect() as conn:
        rows = conn.execute(
            sa.select(LOG.c.action, LOG.c.subject_ids).where(LOG.c.action == "lookup:email")
        ).all()
    assert [(a, json.loads(s)) for a, s in rows] == [("lookup:email", [sid]), ("lookup:email", [])]


def test_reading_privacy_requests_is_audited_with_the_subjects_named(
    cdp_env: CdpEnv, client: TestClient
) -> None:
    """A request says who exercised which right: listing or showing requests is a read of
    personal data, recorded with the subjects the answer names (API and CLI alike)."""
    from typer.testing import CliRunner

    from cdp.cli import app as cli_app

    rt = cdp_env.runtime
    sids = [make_subject(rt, identities={"email": f"rq{i}@example.org"}) for i in range(2)]
    made = make_principal(rt, ["dpo"])
    dpo = {"Authorization": f"Bearer {made.token}", "X-Purpose": "privacy_request"}
    ids = []
    for i in range(2):
        body = {"type": "access", "identity": {"email": f"rq{i}@example.org"}}
        ids.append(client.post("/v1/privacy-requests", json=body, headers=dpo).json()["id"])

    def reads() -> list[tuple[str, list[str]]]:
        with rt.data_engine.connect() as conn:
            rows = conn.execute(
                sa.select(LOG).where(LOG.c.resource == "privacy_requests").order_by(LOG.c.seq)
            ).all()
        return [(r.action, sorted(json.loads(r.subject_ids))) for r in rows]

    assert client.get("/v1/privacy-requests", headers=dpo).status_code == 200
    assert client.get(f"/v1/privacy-requests/{ids[0]}", headers=dpo).status_code == 200
    auth = ["--token", made.token, "--purpose", "privacy_request"]
    assert CliRunner().invoke(cli_app, ["privacy", "list", *auth]).exit_code == 0
    assert CliRunner().invoke(cli_app, ["privacy", "show", ids[1], *auth]).exit_code == 0
    assert reads() == [
        ("list", sorted(sids)),
        ("read", [sids[0]]),
        ("list", sorted(sids)),
        ("read", [sids[1]]),
    ]
