"""/v1/principals: admin only; a non-admin gets 403 and a denied record; tokens shown once."""

from __future__ import annotations

import pytest
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


def _credential_records(rt: object) -> list[tuple[str, str, str, list[str]]]:
    import json

    with rt.data_engine.connect() as conn:  # type: ignore[attr-defined]
        rows = conn.execute(
            sa.select(LOG.c.principal_id, LOG.c.action, LOG.c.resource, LOG.c.fields)
            .where(LOG.c.resource.in_(["principals", "sources"]), LOG.c.outcome == "allowed")
            .order_by(LOG.c.seq)
        )
        return [(r[0], r[1], r[2], json.loads(r[3])) for r in rows]


def test_the_log_says_who_was_given_which_roles(cdp_env: CdpEnv) -> None:
    """Creating and revoking a principal, over the API or the CLI, and a source's write key:
    the chained log names the credential (its id, never the token) and its roles. It said only
    that *some* principal was created, and the CLI and sources wrote nothing at all."""
    from typer.testing import CliRunner

    from cdp.access.principals import get_by_name
    from cdp.cli import app as cli_app

    rt = cdp_env.runtime
    admin = make_principal(rt, ["admin"], name="root")
    ops = {"Authorization": f"Bearer {admin.token}", "X-Purpose": "operations"}
    with TestClient(create_app()) as client:
        made = client.post("/v1/principals", json={"name": "shadow", "roles": ["dpo"]}, headers=ops)
        shadow = made.json()["principal"]["id"]
        assert client.delete("/v1/principals/shadow", headers=ops).status_code == 200
    runner = CliRunner()
    assert (
        runner.invoke(cli_app, ["principals", "create", "ana", "--role", "analyst"]).exit_code == 0
    )
    assert runner.invoke(cli_app, ["principals", "revoke", "ana"]).exit_code == 0
    assert runner.invoke(cli_app, ["sources", "create", "web"]).exit_code == 0
    assert runner.invoke(cli_app, ["sources", "revoke", "web"]).exit_code == 0
    ana = get_by_name(runtime=rt, name="ana").id
    records = _credential_records(rt)
    assert records[:4] == [
        (admin.principal.id, "create", "principals", [f"principal:{shadow}", "role:dpo"]),
        (admin.principal.id, "delete", "principals", [f"principal:{shadow}", "role:dpo"]),
        ("system:operator", "create", "principals", [f"principal:{ana}", "role:analyst"]),
        ("system:operator", "delete", "principals", [f"principal:{ana}", "role:analyst"]),
    ]
    assert [(r[0], r[1], r[2]) for r in records[4:]] == [
        ("system:operator", "create", "sources"),
        ("system:operator", "delete", "sources"),
    ]
    assert records[4][3] == records[5][3] and records[4][3][0].startswith("source:")


def test_a_credential_change_the_log_cannot_record_is_not_made(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Creating or revoking a principal (API, CLI) or a source's write key, when the audit log
    cannot be written: the change is not made either (it was committed first and recorded after,
    so a revocation or a new credential could go unrecorded)."""
    from typer.testing import CliRunner

    import cdp.audit.service as audit_service
    from cdp.access.principals import authenticate, get_by_name
    from cdp.cli import app as cli_app
    from cdp.errors import NotFoundError
    from cdp.ingest.sources import list_sources

    rt = cdp_env.runtime
    admin = make_principal(rt, ["admin"], name="root")
    kept = make_principal(rt, ["support"], name="kept")
    runner = CliRunner()
    assert runner.invoke(cli_app, ["sources", "create", "web"]).exit_code == 0
    ops = {"Authorization": f"Bearer {admin.token}", "X-Purpose": "operations"}
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        authenticate(runtime=rt, token=admin.token)  # the admin's token is cached: no write

        def broken(*_a: object, **_k: object) -> None:
            raise sa.exc.OperationalError("INSERT", {}, Exception("disk full"))

        monkeypatch.setattr(audit_service, "append", broken)
        made = client.post("/v1/principals", json={"name": "ghost", "roles": ["dpo"]}, headers=ops)
        assert made.status_code >= 500 and "token" not in made.text
        assert client.delete("/v1/principals/kept", headers=ops).status_code >= 500
        assert runner.invoke(cli_app, ["principals", "create", "ghost2", "--role", "dpo"]).exit_code
        assert runner.invoke(cli_app, ["principals", "revoke", "kept"]).exit_code
        assert runner.invoke(cli_app, ["sources", "create", "app"]).exit_code
        assert runner.invoke(cli_app, ["sources", "revoke", "web"]).exit_code
        monkeypatch.undo()
    for name in ("ghost", "ghost2"):
        with pytest.raises(NotFoundError):
            get_by_name(runtime=rt, name=name)
    assert get_by_name(runtime=rt, name="kept").revoked_at is None
    assert authenticate(runtime=rt, token=kept.token).name == "kept"
    assert [(s.name, s.revoked_at) for s in list_sources(runtime=rt)] == [("web", None)]
