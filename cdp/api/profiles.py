"""``/v1/profiles``: permissioned, audited reads of profiles, their orders and their consent.

Routes only parse input and pass the caller's :class:`AccessContext` to
:mod:`cdp.profiles.reads`, which checks field-level permissions and writes the audit record.

``GET /v1/profiles/{id}`` is the hot path: it is async (no worker thread on SQLite; the audit record
is awaited from the group committer), reads its path and query parameters itself (documented in
the OpenAPI document as before), answers with the view's JSON directly (serialised once, by
pydantic; ``response_model`` documents it) and is served by :class:`AuthorisedRoute` (its
authorisation dependency and the endpoint awaited directly, not solved by FastAPI per request).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from cdp.api.auth import AccessContext, authorize
from cdp.api.deps import RuntimeDep, server_runtime
from cdp.api.profiles_route import AuthorisedRoute
from cdp.errors import InvalidInputError
from cdp.profiles import reads
from cdp.profiles.pages import ConsentPage, OrderPage
from cdp.profiles.reads import CURSOR_MAX, MAX_PAGE_SIZE
from cdp.profiles.views import ProfileView, parse_fields

router = APIRouter(prefix="/v1/profiles", tags=["profiles"])

ProfileRead = Annotated[AccessContext, Depends(authorize("profile", "read"))]
BehaviourRead = Annotated[AccessContext, Depends(authorize("data:behaviour", "read"))]
ConsentRead = Annotated[AccessContext, Depends(authorize("data:consent", "read"))]
SUBJECT_ID_PATTERN: Final = "[0-9a-f]{32}"
FIELDS_DESCRIPTION: Final = "Comma-separated fields to return; default: every field you may see."
SubjectId = Annotated[str, Path(pattern=f"^{SUBJECT_ID_PATTERN}$", description="A cdp subject id.")]
Fields = Annotated[str | None, Query(description=FIELDS_DESCRIPTION)]
Limit = Annotated[
    int | None,
    Query(ge=1, le=MAX_PAGE_SIZE, description=f"Page size (default 50, at most {MAX_PAGE_SIZE})."),
]
Cursor = Annotated[
    int | None, Query(ge=0, le=CURSOR_MAX, description="next_cursor of the previous page.")
]


class ProfileList(BaseModel):
    """Profiles found by a lookup (at most one per identity in practice)."""

    items: list[ProfileView]


_SUBJECT_ID: Final = re.compile(SUBJECT_ID_PATTERN)
_ID_MESSAGE: Final = f"String should match pattern '^{SUBJECT_ID_PATTERN}$'"
_PROFILE_PARAMETERS: Final[list[dict[str, Any]]] = [
    {
        "name": "subject_id",
        "in": "path",
        "required": True,
        "schema": {
            "type": "string",
            "pattern": f"^{SUBJECT_ID_PATTERN}$",
            "description": "A cdp subject id.",
            "title": "Subject Id",
        },
        "description": "A cdp subject id.",
    },
    {
        "name": "fields",
        "in": "query",
        "required": False,
        "schema": {
            "anyOf": [{"type": "string"}, {"type": "null"}],
            "description": FIELDS_DESCRIPTION,
            "title": "Fields",
        },
        "description": FIELDS_DESCRIPTION,
    },
]


async def get_profile(request: Request, ctx: ProfileRead) -> Response:
    """One profile: pseudonymous fields, plus the PII categories your role may read for your
    purpose. Fields you may not see are absent."""
    # The path and query parameters are read here, after authorisation (as FastAPI would, with
    # the same 422), and documented through openapi_extra: FastAPI's per-request validation of
    # declared parameters cost more than the rest of the route.
    subject_id = request.path_params["subject_id"]
    if not _SUBJECT_ID.fullmatch(subject_id):
        raise RequestValidationError(
            [{"type": "string_pattern_mismatch", "loc": ("path", "subject_id"), "msg": _ID_MESSAGE}]
        )
    # No query string, no fields (parsing an empty one into QueryParams cost a few µs).
    query = request.scope.get("query_string")
    view = await reads.get_profile_async(
        runtime=server_runtime(),
        ctx=ctx,
        subject_id=subject_id,
        fields=parse_fields(request.query_params.get("fields")) if query else None,
    )
    return Response(view.model_dump_json(exclude_unset=True), media_type="application/json")


# Served by AuthorisedRoute: the dependency and the endpoint are awaited directly, without FastAPI
# solving them per request (cdp/api/profiles_route.py); declared and documented as any route.
router.add_api_route(
    "/{subject_id}",
    get_profile,
    methods=["GET"],
    response_model=ProfileView,
    response_model_exclude_unset=True,
    openapi_extra={"parameters": _PROFILE_PARAMETERS},
    route_class_override=AuthorisedRoute,
)


@router.get("", response_model=ProfileList, response_model_exclude_unset=True)
def find_profiles(
    ctx: ProfileRead,
    runtime: RuntimeDep,
    email: Annotated[str | None, Query()] = None,
    phone: Annotated[str | None, Query()] = None,
    customer_id: Annotated[str | None, Query()] = None,
    fields: Fields = None,
) -> ProfileList:
    """Find profiles by exactly one of email, phone or customer_id (through the token index)."""
    chosen = reads.one_identity(email=email, phone=phone, customer_id=customer_id)
    if chosen is None:
        raise InvalidInputError("give exactly one of email, phone or customer_id", field="query")
    kind, value = chosen
    items = reads.find_profiles(
        runtime=runtime, ctx=ctx, kind=kind, value=value, fields=parse_fields(fields)
    )
    return ProfileList(items=items)


@router.get("/{subject_id}/orders", response_model=OrderPage)
def list_orders(
    subject_id: SubjectId,
    ctx: BehaviourRead,
    runtime: RuntimeDep,
    limit: Limit = None,
    cursor: Cursor = None,
) -> OrderPage:
    """The subject's orders, oldest first, paginated (at most 200 per page)."""
    return reads.list_orders(
        runtime=runtime, ctx=ctx, subject_id=subject_id, limit=limit, cursor=cursor
    )


@router.get("/{subject_id}/consent", response_model=ConsentPage)
def list_consent(
    subject_id: SubjectId,
    ctx: ConsentRead,
    runtime: RuntimeDep,
    limit: Limit = None,
    cursor: Cursor = None,
) -> ConsentPage:
    """The subject's consent ledger entries, oldest first, paginated (at most 200 per page)."""
    return reads.list_consent(
        runtime=runtime, ctx=ctx, subject_id=subject_id, limit=limit, cursor=cursor
    )
