"""GET /v1/profiles/{id} is served by AuthorisedRoute: its authorisation dependency and endpoint
are awaited directly (FastAPI solves nothing per request) with the same answers as FastAPI's own
handler, and every shape the direct handler does not cover falls back to FastAPI's handler."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import fastapi.routing
import pytest
from fastapi import Depends, FastAPI, Header, Request, Response
from fastapi.dependencies.utils import get_dependant
from fastapi.testclient import TestClient

from cdp.access.context import AccessContext
from cdp.api import profiles, profiles_route
from cdp.api.app import create_app
from cdp.api.errors import install_error_handlers
from cdp.api.middleware import RequestContextMiddleware
from cdp.api.profiles_route import direct_plan
from tests.audit.factories import make_principal
from tests.conftest import CdpEnv
from tests.factories import make_subject

GUARD = profiles.ProfileRead.__metadata__[0].dependency
Guarded = Annotated[AccessContext, Depends(GUARD)]


@pytest.fixture
def solved(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts FastAPI's dependency solving (its own handler's first step)."""
    calls: list[int] = []
    original = fastapi.routing.solve_dependencies

    async def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return await original(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    return calls


def _requests(env: CdpEnv) -> list[tuple[str, dict[str, str]]]:
    """A 200, 401, 403 (a field the role may not read), 422 (bad id, bad field, no purpose) and
    404, each with a fixed request id so that the bodies compare whole."""
    sid = make_subject(env.runtime, {"email": "a@example.com", "phone": "+14155550123"})
    support = make_principal(env.runtime, ["support"]).token
    analyst = make_principal(env.runtime, ["analyst"]).token
    ok = {"Authorization": f"Bearer {support}", "X-Purpose": "support"}
    return [
        (f"/v1/profiles/{sid}", ok),
        (f"/v1/profiles/{sid}?fields=email", ok),
        (f"/v1/profiles/{sid}", {"X-Purpose": "support"}),
        (f"/v1/profiles/{sid}", {"Authorization": "Bearer cdp_nope", "X-Purpose": "support"}),
        (
            f"/v1/profiles/{sid}?fields=email",
            {"Authorization": f"Bearer {analyst}", "X-Purpose": "analytics"},
        ),
        ("/v1/profiles/not-an-id", ok),
        (f"/v1/profiles/{sid}?fields=bogus", ok),
        (f"/v1/profiles/{sid}", {"Authorization": f"Bearer {support}"}),
        (f"/v1/profiles/{'0' * 32}", ok),
    ]


def _answers(app: FastAPI, requests: list[tuple[str, dict[str, str]]]) -> list[Any]:
    with TestClient(app) as client:
        out = []
        for i, (url, headers) in enumerate(requests):
            r = client.get(url, headers={**headers, "X-Request-ID": f"req-{i}"})
            out.append((r.status_code, r.json(), r.headers.get("www-authenticate")))
        return out


def test_the_direct_handler_answers_as_fastapis_own(cdp_env: CdpEnv, solved: list[int]) -> None:
    requests = _requests(cdp_env)
    direct = _answers(create_app(), requests)
    assert solved == []  # nothing solved by FastAPI: the direct handler served every request
    assert [a[0] for a in direct] == [200, 200, 401, 401, 403, 422, 422, 422, 404]

    fallback = create_app()

    async def via_fastapi(request: Request, x_unused: str | None = Header(None)) -> AccessContext:
        return await GUARD(request)  # a header parameter: FastAPI must solve this override

    fallback.dependency_overrides[GUARD] = via_fastapi
    assert _answers(fallback, requests) == direct
    assert len(solved) == len(requests)


def test_an_override_taking_nothing_is_called_directly(cdp_env: CdpEnv, solved: list[int]) -> None:
    """The benchmark's shape: ``app.dependency_overrides[guard] = async () -> context``."""
    sid = make_subject(cdp_env.runtime, {"email": "a@example.com"})
    fixed = AccessContext("p0", "fixed", ("support",), "support", "r", "127.0.0.1")
    app = create_app()

    async def fixed_context() -> AccessContext:
        return fixed

    app.dependency_overrides[GUARD] = fixed_context
    with TestClient(app) as client:
        r = client.get(f"/v1/profiles/{sid}")  # no token, no purpose: the override decides
    assert r.status_code == 200 and r.json()["email"] == "a@example.com"
    assert solved == []


def test_a_dependency_added_where_the_router_is_included_still_runs(cdp_env: CdpEnv) -> None:
    ran: list[str] = []

    def extra(request: Request) -> None:
        ran.append(request.url.path)

    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware)
    app.include_router(profiles.router, dependencies=[Depends(extra)])
    sid = make_subject(cdp_env.runtime, {"email": "a@example.com"})
    token = make_principal(cdp_env.runtime, ["support"]).token
    with TestClient(app) as client:
        r = client.get(f"/v1/profiles/{sid}", headers=_bearer(token))
        assert r.status_code == 200
        assert client.get(f"/v1/profiles/{sid}").status_code == 401
    assert ran == [f"/v1/profiles/{sid}"] * 2  # FastAPI's handler: the extra dependency ran


def test_fastapis_telemetry_gets_fastapis_handler(
    cdp_env: CdpEnv, solved: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(profiles_route, "_telemetry_data", lambda: object())
    sid = make_subject(cdp_env.runtime, {"email": "a@example.com"})
    token = make_principal(cdp_env.runtime, ["support"]).token
    with TestClient(create_app()) as client:
        r = client.get(f"/v1/profiles/{sid}", headers=_bearer(token))
    assert r.status_code == 200 and solved == [1]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "X-Purpose": "support"}


def _route_dependant(app: FastAPI, path: str) -> Any:
    for route in fastapi.routing.iter_route_contexts(app.routes):
        if getattr(route, "path", None) == path and "GET" in (route.methods or ()):
            return route.dependant
    raise AssertionError(path)


@pytest.fixture
def app() -> Iterator[FastAPI]:
    yield create_app()


def test_only_the_authorised_request_only_shape_is_planned(app: FastAPI) -> None:
    plan = direct_plan(_route_dependant(app, "/v1/profiles/{subject_id}"))
    assert plan is not None and plan.guard is GUARD and plan.context == "ctx"
    # declared parameters, a sync endpoint, a sub-dependency: FastAPI's handler
    for path in ("/v1/profiles", "/v1/profiles/{subject_id}/orders", "/healthz"):
        assert direct_plan(_route_dependant(app, path)) is None

    async def reads_a_query(request: Request, ctx: Guarded, q: str | None = None) -> None: ...
    async def sets_headers(request: Request, ctx: Guarded, response: Response) -> None: ...
    async def plain(request: Request, ctx: Guarded) -> None: ...

    for endpoint in (reads_a_query, sets_headers):
        assert direct_plan(get_dependant(path="/x", call=endpoint)) is None
    assert direct_plan(get_dependant(path="/x", call=plain)) is not None
