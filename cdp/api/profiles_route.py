"""A route class for the profile read's hot path: the authorisation dependency and the endpoint
called directly, without FastAPI solving them per request.

``GET /v1/profiles/{id}`` declares one dependency, ``authorize("profile", "read")``, and reads its
parameters itself (:mod:`cdp.api.profiles`). FastAPI still solved that declaration on every request
(a sub-response, exit stacks, cache keys, empty parameter lists walked for both the dependency and
the endpoint), which cost about a sixth of the whole request's CPU in the event loop. For a route
whose effective dependant is exactly that shape, :class:`AuthorisedRoute` builds a handler that
does what FastAPI would do for it, in the same order: await the authorisation dependency with the
request (or its override from ``app.dependency_overrides``, when that too takes nothing but the
request), then await the endpoint with the request and the context, and return its
:class:`~starlette.responses.Response` as it is. Errors propagate unchanged to the same exception
handlers; the route, its dependency and its OpenAPI operation are the ones declared, so the route
audit (``tests/api/test_routes_authorised.py``) and the OpenAPI document see no difference.

Anything else falls back to FastAPI's own handler, decided once per handler (a parameter to read,
a sub-dependency, a dependency added where the router is included, a sync or generator callable)
or per request (an override FastAPI must solve; FastAPI's native telemetry recording the request,
so its operation spans stay complete).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, Final

import fastapi.routing
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_dependant
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from cdp.api.auth import AUTHORIZE_MARKER


def _telemetry_getter() -> Callable[[], Any]:
    """FastAPI's ``get_telemetry_data`` (its native telemetry's data for the current request),
    or a function returning ``None`` where the installed FastAPI has none."""
    try:
        module = importlib.import_module("fastapi.telemetry._api")
    except ImportError:  # pragma: no cover - depends on the installed FastAPI
        return lambda: None
    found: Callable[[], Any] = getattr(module, "get_telemetry_data", lambda: None)
    return found


_telemetry_data: Final = _telemetry_getter()
Handler = Callable[[Request], Coroutine[Any, Any, Response]]
_MAX_OVERRIDES: Final = 64


def _nothing_to_solve(dependant: Dependant) -> bool:
    """No parameter to read or validate, no response, background tasks, websocket, connection
    or security scopes to build: at most the request is passed."""
    if dependant.own_oauth_scopes or dependant.parent_oauth_scopes:
        return False
    for item in dataclasses.fields(dependant):
        value = getattr(dependant, item.name)
        if item.name.endswith("_params") and value:
            return False
        if item.name.endswith("_param_name") and item.name != "request_param_name" and value:
            return False
    return True


def takes_only_the_request(dependant: Dependant) -> bool:
    """Whether FastAPI would call ``dependant.call`` with nothing but (optionally) the request:
    an ``async def`` with no sub-dependency and nothing to solve."""
    return (
        not dependant.dependencies
        and inspect.iscoroutinefunction(dependant.call)
        and _nothing_to_solve(dependant)
    )


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    """How to call one route directly: its guard and the parameter names FastAPI would use."""

    guard: Callable[..., Any]
    guard_request: str | None
    endpoint: Callable[..., Any]
    endpoint_request: str
    context: str


def direct_plan(dependant: Dependant) -> _Plan | None:
    """The direct call of a route whose effective dependant is an ``async def`` endpoint taking
    the request and one :func:`~cdp.api.auth.authorize` dependency that takes only the request;
    ``None`` for any other shape."""
    if len(dependant.dependencies) != 1:
        return None
    guard = dependant.dependencies[0]
    if (
        guard.call is None
        or not hasattr(guard.call, AUTHORIZE_MARKER)
        or guard.name is None
        or not takes_only_the_request(guard)
        or dependant.call is None
        or dependant.request_param_name is None
        or not inspect.iscoroutinefunction(dependant.call)
        or not _nothing_to_solve(dependant)
    ):
        return None
    return _Plan(
        guard=guard.call,
        guard_request=guard.request_param_name,
        endpoint=dependant.call,
        endpoint_request=dependant.request_param_name,
        context=guard.name,
    )


class AuthorisedRoute(APIRoute):
    """An :class:`~fastapi.routing.APIRoute` served by a direct handler when its shape allows it
    (see the module doc); otherwise exactly FastAPI's route."""

    def get_route_handler(self) -> Handler:
        standard = super().get_route_handler()
        route = _effective(self)
        plan = direct_plan(route.dependant)
        if plan is None:
            return standard
        provider = route.dependency_overrides_provider
        path = route.path_format
        overrides: dict[Callable[..., Any], tuple[bool, str | None]] = {}

        def override_call(override: Callable[..., Any]) -> tuple[bool, str | None]:
            """Whether FastAPI would call an override with at most the request, and the name
            it would pass the request by (``None``: called with nothing)."""
            found = overrides.get(override)
            if found is None:
                dependant = get_dependant(path=path, call=override)
                found = (takes_only_the_request(dependant), dependant.request_param_name)
                if len(overrides) >= _MAX_OVERRIDES:
                    overrides.clear()
                overrides[override] = found
            return found

        async def handler(request: Request) -> Response:
            guard, request_name = plan.guard, plan.guard_request
            if provider is not None and provider.dependency_overrides:
                override = provider.dependency_overrides.get(guard)
                if override is not None:
                    direct, request_name = override_call(override)
                    if not direct:
                        return await standard(request)
                    guard = override
            if _telemetry_data() is not None:
                return await standard(request)
            ctx = await (guard(**{request_name: request}) if request_name else guard())
            response = await plan.endpoint(**{plan.endpoint_request: request, plan.context: ctx})
            if not isinstance(response, Response):
                raise TypeError("a directly served route must return a Response")
            return response

        return handler


def _effective(route: APIRoute) -> Any:
    """The route as FastAPI builds this handler for it: the effective route of the inclusion
    being built (its dependant includes the dependencies added where the router was included)
    when FastAPI builds one, else the route itself (which older FastAPI versions copy per
    inclusion with those dependencies). The same lookup as ``APIRoute.get_route_handler``."""
    var = getattr(fastapi.routing, "_effective_route_context_var", None)
    context = var.get() if var is not None else None
    if context is not None and getattr(context, "original_route", None) is route:
        return context
    return route
