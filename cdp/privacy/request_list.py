"""Listing privacy requests: pages ordered by deadline, with an opaque cursor."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cdp.access.context import AccessContext
from cdp.audit.service import audited_read
from cdp.clock import Clock, utcnow
from cdp.errors import InvalidInputError
from cdp.privacy.models import PrivacyRequest, PrivacyRequestEvent
from cdp.privacy.requests import OPEN_STATUSES, RequestStatus, RequestView, get, view
from cdp.runtime import Runtime

_PR = PrivacyRequest.__table__  # type: ignore[attr-defined]
_EV = PrivacyRequestEvent.__table__  # type: ignore[attr-defined]

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500


@dataclass(frozen=True, slots=True)
class RequestPage:
    """One page of a request list; ``next_cursor`` is None on the last page."""

    items: list[RequestView]
    next_cursor: str | None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR = re.compile(r"^([0-9]{1,19})_(pr_[0-9a-f]{24})$")
CURSOR_PATTERN = _CURSOR.pattern


def deadline_column() -> sa.ColumnElement[datetime]:
    """SQL: the date a request must be answered by (its extension, if any)."""
    return sa.func.coalesce(_PR.c.extended_until, _PR.c.due_at)


def _cursor_of(view: RequestView) -> str:
    return f"{(view.deadline - _EPOCH) // timedelta(microseconds=1)}_{view.id}"


def _after(cursor: str) -> sa.ColumnElement[bool]:
    match = _CURSOR.match(cursor)
    if match is None:
        raise InvalidInputError("not a cursor of this list (next_cursor)", field="cursor")
    micros, last_id = int(match.group(1)), match.group(2)
    try:
        last = _EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        raise InvalidInputError("not a cursor of this list (next_cursor)", field="cursor") from None
    deadline = deadline_column()
    return sa.or_(deadline > last, sa.and_(deadline == last, _PR.c.id > last_id))


def list_requests(
    *,
    runtime: Runtime,
    status: str | None = None,
    overdue_only: bool = False,
    clock: Clock = utcnow,
    limit: int | None = None,
    cursor: str | None = None,
    conn: Connection | None = None,
) -> RequestPage:
    """A page of requests, most urgent deadline first (then by id); optionally only one status,
    or only the overdue ones (open, deadline passed: filtered in SQL, before the page is cut).
    ``limit`` is the page size (default :data:`DEFAULT_PAGE_SIZE`, at most
    :data:`MAX_PAGE_SIZE`); ``cursor`` is the previous page's ``next_cursor``."""
    size = DEFAULT_PAGE_SIZE if limit is None else limit
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise InvalidInputError(f"a page holds 1 to {MAX_PAGE_SIZE} requests", field="limit")
    query = sa.select(_PR).order_by(deadline_column(), _PR.c.id)
    if status is not None:
        try:
            query = query.where(_PR.c.status == RequestStatus(status).value)
        except ValueError:
            raise InvalidInputError(
                "unknown status; one of " + ", ".join(s.value for s in RequestStatus),
                field="status",
            ) from None
    if overdue_only:
        query = query.where(
            _PR.c.status.in_([s.value for s in OPEN_STATUSES]), deadline_column() < clock()
        )
    if cursor is not None:
        query = query.where(_after(cursor))
    if conn is None:
        with runtime.data_engine.connect() as own:
            return _page(own, query, size)
    return _page(conn, query, size)


def _page(conn: Connection, query: sa.Select[Any], size: int) -> RequestPage:
    """One page of ``query`` (``size`` rows), with each request's steps."""
    rows = conn.execute(query.limit(size + 1)).all()
    steps: dict[str, list[Any]] = {r.id: [] for r in rows[:size]}
    if steps:
        for step in conn.execute(
            sa.select(_EV.c.request_id, _EV.c.at, _EV.c.status, _EV.c.actor, _EV.c.note)
            .where(_EV.c.request_id.in_(list(steps)))
            .order_by(_EV.c.id)
        ):
            steps[step.request_id].append(step)
    views = [view(conn, r, steps[r.id]) for r in rows[:size]]
    more = len(rows) > size
    return RequestPage(items=views, next_cursor=_cursor_of(views[-1]) if more else None)


#: The audit resource of reading privacy requests (the policy's resource of the same name).
READ_RESOURCE = "privacy_requests"


def read_page(
    *,
    runtime: Runtime,
    ctx: AccessContext,
    status: str | None = None,
    overdue_only: bool = False,
    limit: int | None = None,
    cursor: str | None = None,
) -> RequestPage:
    """:func:`list_requests` for a principal, as an audited read (:func:`audited_read`): the
    page is returned only once the read is in the audit log with the subjects it names (a
    request says who exercised which right); a read that fails is recorded too."""
    with audited_read(runtime=runtime, ctx=ctx, action="list", resource=READ_RESOURCE) as scope:
        page = list_requests(
            runtime=runtime,
            status=status,
            overdue_only=overdue_only,
            limit=limit,
            cursor=cursor,
            conn=scope.conn,
        )
        scope.returned(subject_ids=_subjects(page.items))
    return page


def read_one(*, runtime: Runtime, ctx: AccessContext, request_id: str) -> RequestView:
    """One request for a principal, audited like :func:`read_page`."""
    with audited_read(runtime=runtime, ctx=ctx, action="read", resource=READ_RESOURCE) as scope:
        found = get(runtime=runtime, request_id=request_id, conn=scope.conn)
        scope.returned(subject_ids=_subjects([found]))
    return found


def _subjects(items: list[RequestView]) -> list[str]:
    return list(dict.fromkeys(v.subject_id for v in items if v.subject_id is not None))
