"""Bearer authentication and the authorize() dependency: 401, 422, 403 with a denied record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import pytest
import sqlalchemy as sa
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from cdp.access.principals import authenticate, list_principals, revoke
from cdp.api.auth import AccessContext, authorize
from cdp.api.errors import install_error_handlers
from cdp.api.middleware import RequestContextMiddleware
from cdp.audit.writer import LOG
from cdp.clock import FrozenClock
from cdp.errors import AuthenticationError, ConflictError, InvalidInputError
from tests.audit.factories import make_principal
from tests.conftest import CdpEnv

SegmentsRead = Annotated[AccessContext, Depends(authorize("segments", "read"))]


def _app() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware)

    @app.get("/v1/things/{subject_id}")
    def thing(subject_id: str, ctx: SegmentsRead) -> dict[str, object]:
        return {"principal": ctx.principal_name, "roles": list(ctx.roles), "purpose": ctx.purpose}

    return TestClient(app)


def _audit(env: CdpEnv) -> list[sa.Row[tuple[object, ...]]]:
    with env.runtime.data_engine.connect() as conn:
        return list(conn.execute(sa.select(LOG).order_by(LOG.c.seq)).all())


def test_allowed_request_gets_context(cdp_env: CdpEnv) -> None:
    made = make_principal(cdp_env.runtime, ["analyst"], name="ana")
    r = _app().get(
        "/v1/things/x",
        headers={"Authorization": f"Bearer {made.token}", "X-Purpose": "analytics"},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"principal": "ana", "roles": ["analyst"], "purpose": "analytics"}


@pytest.mark.parametrize("token", [None, "cdp_not-a-token", ""])
def test_unknown_or_missing_token_is_401(cdp_env: CdpEnv, token: str | None) -> None:
    headers = {"X-Purpose": "analytics"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    r = _app().get("/v1/things/x", headers=headers)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == "Bearer"


def test_revoked_and_expired_tokens_are_401(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    revoked = make_principal(rt, ["analyst"], name="gone")
    revoke(runtime=rt, name="gone")
    clock = FrozenClock(datetime.now(UTC) - timedelta(hours=2))
    expired = make_principal(rt, ["analyst"], expires_in=timedelta(hours=1), clock=clock)
    client = _app()
    for token in (revoked.token, expired.token):
        r = client.get(
            "/v1/things/x", headers={"Authorization": f"Bearer {token}", "X-Purpose": "analytics"}
        )
        assert r.status_code == 401
        assert "token" in r.json()["error"]["message"]


def test_missing_or_unknown_purpose_is_422(cdp_env: CdpEnv) -> None:
    made = make_principal(cdp_env.runtime, ["analyst"])
    client = _app()
    for headers in ({}, {"X-Purpose": "curiosity"}):
        r = client.get("/v1/things/x", headers={"Authorization": f"Bearer {made.token}", **headers})
        assert r.status_code == 422
        assert "X-Purpose" in r.json()["error"]["message"]


def test_denied_request_is_403_with_denied_record(cdp_env: CdpEnv) -> None:
    made = make_principal(cdp_env.runtime, ["support"], name="sam")
    sid = "ab" * 16
    r = _app().get(
        f"/v1/things/{sid}",
        headers={"Authorization": f"Bearer {made.token}", "X-Purpose": "support"},
    )
    assert r.status_code == 403
    rows = _audit(cdp_env)
    assert len(rows) == 1
    row = rows[0]
    assert (row.outcome, row.action, row.resource, row.purpose) == (
        "denied",
        "read",
        "segments",
        "support",
    )
    assert row.principal_name == "sam" and row.roles == "support"
    assert row.subject_ids == f'["{sid}"]' and row.fields == "[]"
    # Starlette's test client calls its peer "testclient", which is no address: "invalid"
    assert row.request_id == r.headers["x-request-id"] and row.client == "invalid"


def test_denied_path_value_that_is_not_an_id_is_not_recorded(cdp_env: CdpEnv) -> None:
    made = make_principal(cdp_env.runtime, ["support"])
    r = _app().get(
        "/v1/things/alice@example.com",
        headers={"Authorization": f"Bearer {made.token}", "X-Purpose": "support"},
    )
    assert r.status_code == 403
    assert _audit(cdp_env)[0].subject_ids == "[]"


def test_token_is_stored_only_as_hash_and_list_never_shows_it(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    made = make_principal(rt, ["admin"], name="root")
    with rt.data_engine.connect() as conn:
        dump = repr(conn.exec_driver_sql("SELECT * FROM principals").all())
    assert made.token not in dump
    assert made.token not in repr(made) and made.token not in repr(list_principals(runtime=rt))
    assert authenticate(runtime=rt, token=made.token).name == "root"
    with pytest.raises(AuthenticationError):
        authenticate(runtime=rt, token=made.token + "x")


def test_create_refuses_unknown_roles_and_duplicate_names(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    with pytest.raises(InvalidInputError):
        make_principal(rt, ["superuser"])
    make_principal(rt, ["admin"], name="dup")
    with pytest.raises(ConflictError):
        make_principal(rt, ["admin"], name="dup")


def test_revocation_elsewhere_applies_after_the_cache_window(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = cdp_env.runtime
    made = make_principal(rt, ["support"], name="cached")
    assert authenticate(runtime=rt, token=made.token).name == "cached"
    with rt.data_engine.begin() as conn:  # as another process's `cdp principals revoke` would
        conn.execute(
            sa.text("UPDATE principals SET revoked_at = :t WHERE name = 'cached'"),
            {"t": datetime.now(UTC)},
        )
    assert authenticate(runtime=rt, token=made.token).name == "cached"  # within the window
    monkeypatch.setattr(rt.settings, "auth_cache_seconds", 0.0)
    with pytest.raises(AuthenticationError):
        authenticate(runtime=rt, token=made.token)
