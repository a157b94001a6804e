"""Operations endpoints (the request metrics are counted by :mod:`cdp.api.middleware`).

- ``GET /healthz`` — liveness: the process answers. Public, touches nothing.
- ``GET /readyz`` — readiness (:func:`cdp.health.readiness`): databases reachable, migrations at
  head, key material loadable. Public; says only ok or fail per check (reasons go to the log).
  503 with the error body when any check fails, so a load balancer takes the worker out.
- ``GET /metrics`` — Prometheus text format (:mod:`cdp.observability`). Needs the policy's
  ``ops``/``read`` (the ``admin`` role, purpose ``operations``): route names, volumes and error
  rates describe the business and the attack surface, so they are not public. No personal data
  and no ids are ever labels.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.requests import Request

from cdp.api.auth import AccessContext, authorize
from cdp.api.errors import error_body
from cdp.api.openapi_access import error_responses
from cdp.health import readiness
from cdp.observability import render
from cdp.settings import get_settings

router = APIRouter(tags=["operations"])

OpsRead = Annotated[AccessContext, Depends(authorize("ops", "read"))]

CheckState = Literal["ok", "fail"]


class Health(BaseModel):
    """Liveness answer."""

    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """Readiness answer: one state per check."""

    status: Literal["ok"]
    checks: dict[str, CheckState]


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """Liveness probe: 200 while the process serves HTTP. Reads nothing."""
    return Health()


@router.get("/readyz", response_model=Readiness, responses=error_responses(503))
def readyz(request: Request) -> Readiness | JSONResponse:
    """Readiness probe: 200 when every check passes, else 503 (error body, one detail per
    failed check)."""
    result = readiness(settings=get_settings())
    if all(result.values()):
        return Readiness(status="ok", checks=dict.fromkeys(result, "ok"))
    details: list[dict[str, Any]] = [
        {"loc": name, "msg": "fail"} for name, ok in result.items() if not ok
    ]
    body = error_body(request, "not_ready", "a readiness check failed", details)
    return JSONResponse(body, status_code=503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(ctx: OpsRead) -> Response:
    """Prometheus metrics of this worker (of every worker with ``PROMETHEUS_MULTIPROC_DIR``)."""
    del ctx  # authorised; metrics carry no personal data, so there is no audit record
    payload, content_type = render()
    return Response(payload, media_type=content_type)
