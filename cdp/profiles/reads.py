"""Audited, permissioned reads of profiles: one subject, a lookup by identity, orders, consent.

Every function takes the caller's :class:`AccessContext`, checks what the policy allows for its
purpose, reads inside :func:`cdp.audit.service.audited_read` (the audit record is committed with
the read, before anything is returned) and returns pydantic views that carry only what was
allowed. The door (API route, CLI command) only parses input and renders output.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar, cast

import anyio.to_thread
import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy import Connection

from cdp.access.categories import PII_FIELDS
from cdp.access.context import AccessContext
from cdp.audit.service import AuditScope, audited_read, audited_read_async, require
from cdp.consent.models import ConsentEvent
from cdp.crypto.normalize import IdentityKind
from cdp.crypto.sealed_record import unpack
from cdp.db.models import Identity, Subject
from cdp.errors import InvalidInputError, NotFoundError
from cdp.profiles.former_ids import current_ids
from cdp.profiles.models import Order
from cdp.profiles.pages import (
    CONSENT_FIELDS,
    ORDER_FIELDS,
    ConsentOut,
    ConsentPage,
    OrderOut,
    OrderPage,
)
from cdp.profiles.pii_records import PII_RECORDS
from cdp.profiles.prepared import Prepared
from cdp.profiles.views import (
    OrderSummary,
    ProfileData,
    ProfileView,
    build_view,
    resources_needed,
    shown_kinds,
    visible_fields,
)
from cdp.runtime import Runtime

MAX_PAGE_SIZE: Final = 200
"""Hard maximum of items per page of any list."""
CURSOR_MAX: Final = 2**31 - 1
"""The largest cursor: order and consent ids are 32-bit integers (PostgreSQL's ``integer``; a
larger value cannot even be compared with them there)."""
DEFAULT_PAGE_SIZE: Final = 50
LOOKUP_KINDS: Final = (IdentityKind.EMAIL, IdentityKind.PHONE, IdentityKind.CUSTOMER_ID)
_CONTACT_KINDS: Final = frozenset({IdentityKind.EMAIL, IdentityKind.PHONE})

SUBJECTS = cast(sa.Table, Subject.__table__)  # type: ignore[attr-defined]
IDENTITIES = cast(sa.Table, Identity.__table__)  # type: ignore[attr-defined]
ORDERS = cast(sa.Table, Order.__table__)  # type: ignore[attr-defined]
CONSENT = cast(sa.Table, ConsentEvent.__table__)  # type: ignore[attr-defined]


def page_size(limit: int | None) -> int:
    """Clamp a requested page size: default 50, hard maximum 200."""
    if limit is None:
        return DEFAULT_PAGE_SIZE
    if limit < 1:
        raise InvalidInputError("limit must be at least 1", field="limit")
    return min(limit, MAX_PAGE_SIZE)


def _require_all(
    runtime: Runtime, ctx: AccessContext, resources: list[str], sid: list[str]
) -> None:
    for resource in resources:
        require(runtime=runtime, ctx=ctx, resource=resource, action="read", subject_ids=sid)


# Built once: the hot path only binds values (no statement construction per request, and no
# expanding IN, whose SQL is rebuilt on every execution). Two statements per profile: the subject
# row with its identity kinds (one aggregated subquery), and its sealed PII fields.
def _subject_query(kinds: sa.ColumnElement[Any]) -> sa.Select[Any]:
    return sa.select(
        SUBJECTS.c.created_at,
        SUBJECTS.c.signed_up_at,
        sa.select(kinds).where(IDENTITIES.c.subject_id == SUBJECTS.c.id).scalar_subquery(),
    ).where(SUBJECTS.c.id == sa.bindparam("sid"))


# The separator is a literal in the SQL: as a bound value it would be re-rendered per execution.
_COMMA: sa.ColumnElement[str] = sa.literal_column("','")
_SUBJECT_Q = {
    "sqlite": Prepared(_subject_query(sa.func.group_concat(IDENTITIES.c.kind, _COMMA))),
    "postgresql": Prepared(_subject_query(sa.func.string_agg(IDENTITIES.c.kind, _COMMA))),
}
_PII_Q = Prepared(
    sa.select(PII_RECORDS.c.sealed).where(PII_RECORDS.c.subject_id == sa.bindparam("sid"))
)
_ORDERS_Q = Prepared(
    sa.select(
        sa.func.count(),
        sa.func.coalesce(sa.func.sum(ORDERS.c.value_base), 0.0),
        sa.func.min(ORDERS.c.ordered_at),
        sa.func.max(ORDERS.c.ordered_at),
    ).where(ORDERS.c.subject_id == sa.bindparam("sid"))
)


def _load(conn: Connection, subject_id: str, visible: frozenset[str]) -> ProfileData | None:
    """What storage holds for the subject, restricted to ``visible`` (PII still sealed; a PII
    field outside ``visible`` is dropped here, unread by anything)."""
    params = {"sid": subject_id}
    found = _SUBJECT_Q[conn.dialect.name].rows(conn, params)
    if not found:
        return None
    subject = found[0]
    kinds: tuple[str, ...] = ()
    if "identity_kinds" in visible and subject[2]:
        kinds = shown_kinds(str(subject[2]).split(","), visible)
    sealed: dict[str, bytes] = {}
    wanted_pii = visible & PII_FIELDS
    if wanted_pii:
        for (record,) in _PII_Q.rows(conn, params):
            sealed = unpack(bytes(record), wanted_pii)
    orders = None
    if "orders" in visible:
        row = _ORDERS_Q.rows(conn, params)[0]
        orders = OrderSummary(
            count=int(row[0]),
            value_total=float(row[1]),
            first_order_at=row[2],
            last_order_at=row[3],
        )
    return ProfileData(
        subject_id=subject_id,
        created_at=subject[0],
        signed_up_at=subject[1],
        identity_kinds=kinds,
        sealed=sealed,
        orders=orders,
    )


def _profile_body(
    runtime: Runtime, subject_id: str, visible: frozenset[str]
) -> Callable[[AuditScope], ProfileView]:
    def body(scope: AuditScope) -> ProfileView:
        data = _load(scope.conn, subject_id, visible)
        if data is None:
            # Not a live subject: an id a merge absorbed is the same person, read at the survivor
            # (named in the record beside the id asked for); looked up only on this miss.
            held = current_ids(scope.conn, [subject_id])[subject_id]
            data = _load(scope.conn, held, visible) if held != subject_id else None
            if data is None:
                raise NotFoundError("no such subject")
            scope.returned(subject_ids=[held])
        view = build_view(data, visible, runtime.vault)
        scope.returned(fields=view.shown())
        return view

    return body


def get_profile(
    *,
    runtime: Runtime,
    ctx: AccessContext,
    subject_id: str,
    fields: frozenset[str] | None = None,
) -> ProfileView:
    """One profile as ``ctx`` may see it. Asking for a field (``fields``) whose category the
    policy does not allow is denied (403, recorded); without ``fields`` the view simply carries
    every field that is allowed. ``NotFoundError`` if the subject does not exist."""
    if fields is not None:
        _require_all(runtime, ctx, resources_needed(fields), [subject_id])
    visible = visible_fields(ctx.categories(), fields)
    body = _profile_body(runtime, subject_id, visible)
    with audited_read(
        runtime=runtime, ctx=ctx, action="read", resource="profile", subject_ids=[subject_id]
    ) as scope:
        return body(scope)


async def get_profile_async(
    *,
    runtime: Runtime,
    ctx: AccessContext,
    subject_id: str,
    fields: frozenset[str] | None = None,
) -> ProfileView:
    """:func:`get_profile` for the API's event loop (same checks, same audit record); a request
    the policy denies is handed to :func:`get_profile` in a worker thread, which records it."""
    if fields is not None and not all(ctx.allows(r, "read") for r in resources_needed(fields)):
        return await anyio.to_thread.run_sync(
            lambda: get_profile(runtime=runtime, ctx=ctx, subject_id=subject_id, fields=fields)
        )
    visible = visible_fields(ctx.categories(), fields)
    return await audited_read_async(
        _profile_body(runtime, subject_id, visible),
        runtime=runtime,
        ctx=ctx,
        action="read",
        resource="profile",
        subject_ids=[subject_id],
    )


def one_identity(
    *, email: str | None, phone: str | None, customer_id: str | None
) -> tuple[IdentityKind, str] | None:
    """The lookup a caller asked for when it gave exactly one of the three (None: not given);
    None when it gave none or several."""
    given = [
        (kind, value)
        for kind, value in (
            (IdentityKind.EMAIL, email),
            (IdentityKind.PHONE, phone),
            (IdentityKind.CUSTOMER_ID, customer_id),
        )
        if value is not None
    ]
    return given[0] if len(given) == 1 else None


def find_profiles(
    *,
    runtime: Runtime,
    ctx: AccessContext,
    kind: IdentityKind,
    value: str,
    fields: frozenset[str] | None = None,
) -> list[ProfileView]:
    """Profiles whose identity of ``kind`` matches ``value``, found through the token index (the
    value is tokenised with every pseudonym-key version; nothing is scanned or decrypted to match).

    A lookup by email or phone tells whether a contact value belongs to a customer, so it needs
    ``pii:contact`` read for the purpose; the record names the identity kind, never the value.
    """
    if kind not in LOOKUP_KINDS:
        raise InvalidInputError("look profiles up by email, phone or customer_id", field="kind")
    if kind in _CONTACT_KINDS:
        _require_all(runtime, ctx, ["pii:contact"], [])
    if fields is not None:
        _require_all(runtime, ctx, resources_needed(fields), [])
    tokens = [t.value for t in runtime.tokenizer.lookup_tokens(kind, value)]
    visible = visible_fields(ctx.categories(), fields)
    views: list[ProfileView] = []
    with audited_read(
        runtime=runtime, ctx=ctx, action=f"lookup:{kind.value}", resource="profile"
    ) as scope:
        found = [
            r[0]
            for r in scope.conn.execute(
                sa.select(IDENTITIES.c.subject_id)
                .where(IDENTITIES.c.kind == kind.value, IDENTITIES.c.token.in_(tokens))
                .distinct()
                .order_by(IDENTITIES.c.subject_id)
                .limit(MAX_PAGE_SIZE)
            )
        ]
        shown: dict[str, None] = {}
        for sid in found:
            data = _load(scope.conn, sid, visible)
            if data is not None:
                view = build_view(data, visible, runtime.vault)
                views.append(view)
                shown.update(dict.fromkeys(view.shown()))
        scope.returned(subject_ids=[v.subject_id for v in views], fields=list(shown))
    return views


def _exists(conn: Connection, subject_id: str) -> None:
    if conn.execute(sa.select(SUBJECTS.c.id).where(SUBJECTS.c.id == subject_id)).first() is None:
        raise NotFoundError("no such subject")


def list_orders(
    *,
    runtime: Runtime,
    ctx: AccessContext,
    subject_id: str,
    limit: int | None = None,
    cursor: int | None = None,
) -> OrderPage:
    """A page of the subject's orders, oldest first (keyset pagination on the order id); an id a
    merge absorbed reads the survivor's (its orders moved there)."""
    with runtime.data_engine.connect() as conn:
        held = current_ids(conn, [subject_id])[subject_id]
    items, nxt = _subject_page(
        runtime, ctx, OrderOut, ORDERS, ORDER_FIELDS, "profile.orders", held, limit, cursor
    )
    return OrderPage(subject_id=held, items=items, next_cursor=nxt)


def list_consent(
    *,
    runtime: Runtime,
    ctx: AccessContext,
    subject_id: str,
    limit: int | None = None,
    cursor: int | None = None,
) -> ConsentPage:
    """A page of the subject's consent ledger, oldest first (the ledger rows as recorded); an id
    a merge absorbed reads the survivor's (the person's choices moved there)."""
    with runtime.data_engine.connect() as conn:
        held = current_ids(conn, [subject_id])[subject_id]
    items, nxt = _subject_page(
        runtime, ctx, ConsentOut, CONSENT, CONSENT_FIELDS, "profile.consent", held, limit, cursor
    )
    return ConsentPage(subject_id=held, items=items, next_cursor=nxt)


_Item = TypeVar("_Item", bound=BaseModel)


def _subject_page(
    runtime: Runtime,
    ctx: AccessContext,
    item: type[_Item],
    table: sa.Table,
    fields: tuple[str, ...],
    resource: str,
    subject_id: str,
    limit: int | None,
    cursor: int | None,
) -> tuple[list[_Item], int | None]:
    """A page of ``fields`` of the subject's rows in ``table`` by ascending id (after
    ``cursor``), as ``item``s, read and audited as ``list`` of ``resource``; and the next page's
    cursor."""
    size = page_size(limit)
    with audited_read(
        runtime=runtime, ctx=ctx, action="list", resource=resource, subject_ids=[subject_id]
    ) as scope:
        _exists(scope.conn, subject_id)
        query = sa.select(table.c.id, *(table.c[f] for f in fields)).where(
            table.c.subject_id == subject_id
        )
        if cursor is not None:
            query = query.where(table.c.id > cursor)
        rows = scope.conn.execute(query.order_by(table.c.id).limit(size + 1)).all()
        items = [item(**_without_id(r._mapping)) for r in rows[:size]]
        scope.returned(fields=fields if items else ())
    nxt = int(rows[size - 1][0]) if len(rows) > size else None
    return items, nxt


def _without_id(mapping: Any) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if k != "id"}
