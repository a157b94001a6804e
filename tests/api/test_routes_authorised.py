"""Every API route must be guarded: by ``authorize(...)`` (principals and the policy), by
ingestion's ``require_source`` (source credentials), or by being listed in PUBLIC_ROUTES below.

PUBLIC_ROUTES is the documented allow-list of routes anyone may call (e.g. liveness probes). Each
entry must say why it is public and must not return personal data. FastAPI's own OpenAPI and
docs pages are allowed as well (they describe the API, they read no data).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any

import fastapi.routing
from fastapi import APIRouter, Depends, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import Route

from cdp.api.app import create_app
from cdp.api.auth import AUTHORIZE_MARKER, authorize

PUBLIC_ROUTES: dict[tuple[str, str], str] = {
    # ("GET", "/v1/health"): "liveness probe: constant body, reads nothing",
    ("GET", "/healthz"): "liveness probe: constant body, reads nothing",
    ("GET", "/readyz"): "readiness probe: ok/fail per check, no data, no reasons",
}
DOCS_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


def _source_guard() -> Any:
    """Ingestion's ``require_source`` (looked up by name: it may not exist yet)."""
    try:
        module = importlib.import_module("cdp.api.source_auth")
    except ImportError:
        return None
    return getattr(module, "require_source", None)


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dep in dependant.dependencies:
        if dep.call is not None:
            yield dep.call
        yield from _calls(dep)


def _guarded(call: Callable[..., Any], source_guard: Any) -> bool:
    if hasattr(call, AUTHORIZE_MARKER):
        return True
    if source_guard is not None and call is source_guard:
        return True
    qualname = getattr(call, "__qualname__", "")
    return qualname.startswith("require_source")


def _flat_routes(app: FastAPI) -> Iterator[Any]:
    """Every route, with included routers flattened (FastAPI >= 0.16x wraps them), each carrying
    its effective dependant (route, router and app dependencies together)."""
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    if iterate is None:
        yield from app.routes
        return
    yield from iterate(app.routes)


def unguarded_routes(app: FastAPI) -> list[str]:
    """Routes that have no authorisation dependency and are not allow-listed."""
    source_guard = _source_guard()
    bad: list[str] = []
    for route in _flat_routes(app):
        original = getattr(route, "original_route", route)
        path = getattr(route, "path", "?")
        if isinstance(original, APIRoute):
            methods = sorted(getattr(route, "methods", None) or ())
            if all((m, path) in PUBLIC_ROUTES for m in methods):
                continue
            dependant = getattr(route, "dependant", None) or original.dependant
            if not any(_guarded(c, source_guard) for c in _calls(dependant)):
                bad.append(f"{','.join(methods)} {path}")
        elif isinstance(original, Route) and path in DOCS_PATHS:
            continue
        else:
            bad.append(f"{type(original).__name__} {path}")
    return bad


def test_every_route_is_authorised() -> None:
    app = create_app()
    routes = list(_flat_routes(app))
    assert any(isinstance(getattr(r, "original_route", r), APIRoute) for r in routes)
    assert unguarded_routes(app) == []


def test_the_check_finds_an_unguarded_route() -> None:
    app = FastAPI()
    router = APIRouter()

    @router.get("/open")
    def open_route() -> dict[str, str]:
        return {}

    @router.get("/closed", dependencies=[Depends(authorize("profile", "read"))])
    def closed_route() -> dict[str, str]:
        return {}

    app.include_router(router)
    assert unguarded_routes(app) == ["GET /open"]


def test_public_routes_are_documented() -> None:
    for key, reason in PUBLIC_ROUTES.items():
        assert reason.strip(), f"{key} is public without a reason"
