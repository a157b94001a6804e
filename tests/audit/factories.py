"""Factories for access and audit tests: principals with tokens, access contexts, profile data."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import Connection

from cdp.access.context import AccessContext
from cdp.access.principals import CreatedPrincipal, create
from cdp.audit.writer import AuditEntry
from cdp.clock import Clock, utcnow
from cdp.consent.models import ConsentEvent
from cdp.profiles.models import Order
from cdp.runtime import Runtime


def make_principal(
    rt: Runtime,
    roles: Sequence[str],
    *,
    name: str | None = None,
    expires_in: timedelta | None = None,
    clock: Clock = utcnow,
) -> CreatedPrincipal:
    """A principal holding ``roles`` (a random name unless given) and its token."""
    return create(
        runtime=rt,
        name=name or f"p-{secrets.token_hex(4)}",
        roles=list(roles),
        expires_in=expires_in,
        clock=clock,
    )


def make_ctx(
    roles: Sequence[str] = ("support",),
    *,
    purpose: str = "support",
    name: str = "tester",
    principal_id: str = "0123456789abcdef",
) -> AccessContext:
    """An access context that did not come through a door (service-level tests)."""
    return AccessContext(
        principal_id=principal_id,
        principal_name=name,
        roles=tuple(roles),
        purpose=purpose,
        request_id=secrets.token_hex(8),
        client="127.0.0.1",
    )


def make_entry(**changes: object) -> AuditEntry:
    """An audit entry of a support read of ``email`` (``changes`` override its fields)."""
    base = AuditEntry(
        principal_id="p0000000000000001",
        principal_name="tester",
        roles=("support",),
        action="read",
        resource="profile",
        subject_ids=(),
        fields=("email",),
        purpose="support",
        outcome="allowed",
        request_id="r1",
        client="127.0.0.1",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def make_orders(rt: Runtime, subject_id: str, count: int, *, start: datetime) -> list[str]:
    """``count`` completed orders of ``subject_id``, one a day from ``start``; their refs."""
    refs = [f"o-{secrets.token_hex(6)}" for _ in range(count)]
    rows = [
        {
            "order_ref": ref,
            "subject_id": subject_id,
            "ordered_at": start + timedelta(days=i),
            "status": "completed",
            "currency": "EUR",
            "total_minor": 1000 + i,
            "discount_minor": 0,
            "value_base": (1000 + i) / 100,
            "coupon": None,
            "source": "test",
            "created_at": start,
            "updated_at": start,
        }
        for i, ref in enumerate(refs)
    ]
    if rows:
        with rt.data_engine.begin() as conn:
            conn.execute(sa.insert(Order), rows)
    return refs


def make_consent(rt: Runtime, subject_id: str, purpose: str, status: str, *, at: datetime) -> None:
    """One consent ledger row."""
    with rt.data_engine.begin() as conn:
        conn.execute(
            sa.insert(ConsentEvent).values(
                subject_id=subject_id,
                purpose=purpose,
                status=status,
                occurred_at=at,
                recorded_at=at,
                source="test",
                notice_version="v1",
                mechanism="checkbox",
                recorded_by="test",
                dedupe_key=secrets.token_hex(16),
            )
        )


@contextmanager
def guards_off(conn: Connection, backend: str) -> Iterator[None]:
    """Let ``conn``'s transaction change the audit tables, as an attacker with owner rights
    could: PostgreSQL's triggers off for the transaction (``session_replication_role``);
    SQLite's dropped and, at the end, created again in the same transaction."""
    if backend == "postgresql":
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        yield
        return
    triggers = conn.exec_driver_sql(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
        "AND tbl_name IN ('audit_log', 'audit_subjects')"
    ).all()
    for name, _ in triggers:
        conn.exec_driver_sql(f"DROP TRIGGER {name}")
    yield
    for _, sql in triggers:
        conn.exec_driver_sql(sql)
