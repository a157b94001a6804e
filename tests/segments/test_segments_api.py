"""The HTTP doors of segments, traits and metrics: authorised, audited, 422 on a bad clause."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from fastapi.testclient import TestClient

from cdp.api.app import create_app
from cdp.audit.writer import LOG
from cdp.clock import FrozenClock
from cdp.traits.compute import compute_traits
from tests.audit.factories import make_principal
from tests.conftest import CdpEnv
from tests.traits.factories import add_order, make_subjects, subject_ids

NOW = datetime.now(UTC).replace(microsecond=0)


def _headers(token: str, purpose: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "X-Purpose": purpose}


def _audit(env: CdpEnv) -> list[dict[str, object]]:
    with env.runtime.data_engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(LOG).order_by(LOG.c.seq)).mappings()]


def test_segments_over_http(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    ids = subject_ids(5, prefix=0x61)
    with rt.data_engine.begin() as conn:
        make_subjects(conn, ids)
        for k, sid in enumerate(ids):
            add_order(conn, sid, NOW - timedelta(days=3 + k), 100.0 * (k + 1))
    compute_traits(runtime=rt, clock=FrozenClock(NOW), with_clv=False)
    marketer = make_principal(rt, ["marketer"]).token
    client = TestClient(create_app())
    h = _headers(marketer, "email_marketing")

    bad = {
        "name": "bad",
        "rule": {"all": [{"trait": {"name": "clv", "op": "between", "value": 1}}]},
    }
    r = client.post("/v1/segments", json=bad, headers=h)
    assert r.status_code == 422
    body = r.json()["error"]
    assert body["details"][0]["loc"] == "rule.all[0].trait.op"
    assert "rule.all[0].trait.op" in body["message"]

    good = {
        "name": "spenders",
        "rule": {"trait": {"name": "total_value", "op": "ge", "value": 250}},
    }
    r = client.post("/v1/segments", json=good, headers=h)
    assert r.status_code == 201 and r.json()["version"] == 1
    assert client.post("/v1/segments", json=good, headers=h).status_code == 409
    listed = client.get("/v1/segments", headers=h).json()
    assert {"spenders", "win_back", "vip"} <= {s["name"] for s in listed}
    assert client.get("/v1/segments/spenders", headers=h).json()["versions"][0]["version"] == 1
    assert client.get("/v1/segments/nope", headers=h).status_code == 404
    assert client.get("/v1/segments/spenders/members", headers=h).status_code == 404  # not computed

    from cdp.segments import membership

    membership.compute_segment(runtime=rt, name="spenders")
    before = len(_audit(cdp_env))
    r = client.get("/v1/segments/spenders/members", params={"limit": 2}, headers=h)
    assert r.status_code == 200
    page = r.json()
    assert page["member_count"] == 3 and len(page["subject_ids"]) == 2 and page["next_cursor"]
    r2 = client.get(
        "/v1/segments/spenders/members",
        params={"limit": 2, "cursor": page["next_cursor"]},
        headers=h,
    )
    assert page["subject_ids"] + r2.json()["subject_ids"] == ids[2:]
    assert (
        client.get("/v1/segments/spenders/members", params={"limit": 1001}, headers=h).status_code
        == 422
    )
    records = _audit(cdp_env)[before:]
    assert [r["outcome"] for r in records] == ["allowed", "allowed"]
    assert json.loads(str(records[0]["subject_ids"])) == page["subject_ids"]
    assert records[0]["resource"] == "segments"

    analyst = make_principal(rt, ["analyst"]).token
    r = client.post(
        "/v1/segments", json=good | {"name": "x"}, headers=_headers(analyst, "analytics")
    )
    assert r.status_code == 403


def test_traits_and_metrics_over_http(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    (sid,) = subject_ids(1, prefix=0x62)
    with rt.data_engine.begin() as conn:
        make_subjects(conn, [sid])
        add_order(conn, sid, NOW - timedelta(days=40), 80.0)
        add_order(conn, sid, NOW - timedelta(days=10), 20.0)
    compute_traits(runtime=rt, clock=FrozenClock(NOW), with_clv=False)
    analyst = make_principal(rt, ["analyst"]).token
    client = TestClient(create_app())
    h = _headers(analyst, "analytics")
    before = len(_audit(cdp_env))
    r = client.get(f"/v1/profiles/{sid}/traits", headers=h)
    assert r.status_code == 200
    t = r.json()
    assert t["order"]["orders"] == 2 and t["order"]["total_value"] == 100.0
    assert t["order"]["repurchase_cycle_days"] == 30.0
    assert t["loyalty"]["tier"] == "member" and t["loyalty"]["points_balance"] == 100
    assert t["clv"] is None
    rec = _audit(cdp_env)[before:]
    assert len(rec) == 1 and rec[0]["resource"] == "data:traits"
    assert json.loads(str(rec[0]["subject_ids"])) == [sid]
    assert client.get(f"/v1/profiles/{'0' * 32}/traits", headers=h).status_code == 404

    m = client.get("/v1/metrics", headers=h)
    assert m.status_code == 200
    body = m.json()
    assert body["active_customers"] == 1 and body["orders"] == 2
    assert body["repurchase_rate"] == 1.0 and body["aov"] == 50.0
    support = make_principal(rt, ["support"]).token
    assert client.get("/v1/metrics", headers=_headers(support, "support")).status_code == 403


def test_put_takes_the_name_from_the_path(cdp_env: CdpEnv) -> None:
    marketer = make_principal(cdp_env.runtime, ["marketer"]).token
    client = TestClient(create_app())
    h = _headers(marketer, "email_marketing")
    first = {"name": "buyers", "rule": {"consent": "analytics"}}
    assert client.post("/v1/segments", json=first, headers=h).status_code == 201

    # the name may be left out of the body: the path names the segment
    r = client.put("/v1/segments/buyers", json={"rule": {"consent": "email_marketing"}}, headers=h)
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["version"]) == ("buyers", 2)

    # a body naming another segment is refused, and neither segment changes
    assert (
        client.post(
            "/v1/segments", json={"name": "other", "rule": {"consent": "analytics"}}, headers=h
        ).status_code
        == 201
    )
    wrong = {"name": "other", "rule": {"consent": "sms_marketing"}}
    r = client.put("/v1/segments/buyers", json=wrong, headers=h)
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["loc"] == "name"
    for name, version in (("buyers", 2), ("other", 1)):
        shown = client.get(f"/v1/segments/{name}", headers=h).json()
        assert max(v["version"] for v in shown["versions"]) == version

    # repeating the path's name is fine; an unknown path name is 404, a name no segment can
    # have is 422 (as for destinations and principals), never 500
    same = {"name": "buyers", "rule": {"consent": "sms_marketing"}}
    assert client.put("/v1/segments/buyers", json=same, headers=h).json()["version"] == 3
    for path, status in (("/v1/segments/nope", 404), ("/v1/segments/Not%20A%20Name", 422)):
        r = client.put(path, json={"rule": {"consent": "analytics"}}, headers=h)
        assert r.status_code == status
