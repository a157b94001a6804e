"""/v1/principals: admin only; a non-admin gets 403 and a denied record; tokens shown once."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi.testclient import TestClient

from cdp.api.app import create_app
from cdp.audit.writer import LOG
from tests.audit.factories import make_principal
from tests.conftest import CdpEnv


def test_admin_manages_principals_and_others_are_refused(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    admin = make_principal(rt, ["admin"], name="root")
    ops = {"Authorization": f"Bearer {admin.token}", "X-Purpose": "operations"}
    with TestClient(create_app()) as client:
        r = client.post("/v1/principals", json={"name": "sam", "roles": ["support"]}, headers=ops)
        assert r.status_code == 201, r.text
        token = r.json()["token"]
        listing = client.get("/v1/principals", headers=ops)
        assert listing.status_code == 200
        assert token not in listing.text
        assert {p["name"] for p in listing.json()} == {"root", "sam"}
        for role, purpose in (
            ("support", "support"),
            ("dpo", "operations"),
            ("analyst", "operations"),
        ):
            other = make_principal(rt, [role])
            h = {"Authorization": f"Bearer {other.token}", "X-Purpose": purpose}
            assert (
                client.post(
                    "/v1/principals", json={"name": "x", "roles": ["admin"]}, headers=h
                ).status_code
                == 403
            )
            assert client.delete("/v1/principals/sam", headers=h).status_code == 403
        sam = {"Authorization": f"Bearer {token}", "X-Purpose": "support"}
        assert client.get("/v1/principals", headers=sam).status_code == 403
        assert client.delete("/v1/principals/sam", headers=ops).json()["state"] == "revoked"
        assert client.get("/v1/principals", headers=sam).status_code == 401
    with rt.data_engine.connect() as conn:
        outcomes = [r.outcome for r in conn.execute(sa.select(LOG).order_by(LOG.c.seq))]
    assert outcomes.count("denied") == 7
