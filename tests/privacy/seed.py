"""Seed one subject into every store: the core tables by hand, every other table that names a
subject (traits, segments, exports, whatever is added later) by a generic row filler, so the
erasure test grows with the schema instead of going stale."""

from __future__ import annotations

import itertools
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from cdp.consent import service as consent
from cdp.crypto.normalize import IdentityKind
from cdp.db.all_models import metadata
from cdp.db.types import UtcDateTime
from cdp.privacy.registry import subject_columns
from cdp.runtime import Runtime
from tests.factories import make_subject

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


@dataclass
class Person:
    """A seeded subject and every secret that must vanish with it."""

    subject_id: str
    email: str
    phone: str
    customer_id: str
    plaintexts: list[str]
    tokens: list[str] = field(default_factory=list)
    message_ids: list[str] = field(default_factory=list)
    order_refs: list[str] = field(default_factory=list)


def _value(col: sa.Column[Any], subject_id: str) -> Any:
    kind = col.type
    if isinstance(kind, UtcDateTime | sa.DateTime):
        return T0
    if isinstance(kind, sa.Boolean):
        return False
    if isinstance(kind, sa.Integer):
        return secrets.randbelow(10**6) + 1
    if isinstance(kind, sa.Float | sa.Numeric):
        return 1.5
    if isinstance(kind, sa.LargeBinary):
        return b"\x00\x01"
    if isinstance(kind, sa.Text) and "subject" in col.name:
        return json.dumps([subject_id])
    length = getattr(kind, "length", None) or 16
    return secrets.token_hex(max(2, min(length, 16) // 2))


OVERRIDES: dict[str, dict[str, Any]] = {
    "privacy_requests": {"type": "erasure", "status": "rejected", "identity_kind": "email"},
}
"""Columns whose generic value would not be a valid row for the table's readers."""


def insert_generic(conn: sa.Connection, table: sa.Table, subject_id: str) -> dict[str, Any]:
    """Insert one row into ``table`` naming ``subject_id``; parents are created as needed."""
    row: dict[str, Any] = dict(OVERRIDES.get(table.name, {}))
    subject_cols = set(subject_columns(table))
    for col in table.columns:
        if col.name in row:
            continue
        if col.name in subject_cols:
            row[col.name] = (
                json.dumps([subject_id]) if isinstance(col.type, sa.Text) else subject_id
            )
            continue
        fks = list(col.foreign_keys)
        if fks:
            parent = fks[0].column
            if col.nullable:
                continue
            parent_row = insert_generic(conn, parent.table, subject_id)
            row[col.name] = parent_row[parent.name]
            continue
        if col.primary_key and isinstance(col.type, sa.Integer) and col.autoincrement:
            continue
        if col.nullable and not col.primary_key:
            continue
        row[col.name] = _value(col, subject_id)
    pk = list(table.primary_key.columns)
    result = conn.execute(sa.insert(table).values(row).returning(*pk))
    for c, v in zip(pk, result.one(), strict=True):
        row[c.name] = v
    return row


_PHONE_SUFFIXES = itertools.count(secrets.randbelow(800))
"""Distinct phone numbers for the people one test seeds (a random pair could collide)."""


def seed_person(rt: Runtime, tag: str) -> Person:
    """A subject with PII, identities, orders, events, consent, merges, and a row in every other
    table that has a subject column."""
    from cdp.profiles.merge import event_field
    from cdp.profiles.models import Event, Order, OrderItem, SubjectMerge

    email = f"{tag}.person@example.org"
    phone = "+14155550" + str(100 + next(_PHONE_SUFFIXES) % 800)
    customer_id = f"cust-{tag}-{secrets.token_hex(4)}"
    first_name = f"Zebulon{tag.capitalize()}"
    city = f"Quuxville{tag.capitalize()}"
    secret_prop = f"secret-note-{tag}-{secrets.token_hex(4)}"
    sid = make_subject(
        rt,
        pii={"email": email, "phone": phone, "first_name": first_name, "city": city},
        identities={
            IdentityKind.EMAIL: email,
            IdentityKind.PHONE: phone,
            IdentityKind.CUSTOMER_ID: customer_id,
        },
    )
    person = Person(sid, email, phone, customer_id, [email, phone, first_name, city, secret_prop])
    person.tokens = [
        rt.tokenizer.token(k, v).value
        for k, v in (
            (IdentityKind.EMAIL, email),
            (IdentityKind.PHONE, phone),
            (IdentityKind.CUSTOMER_ID, customer_id),
        )
    ]
    orders = Order.__table__  # type: ignore[attr-defined]
    items = OrderItem.__table__  # type: ignore[attr-defined]
    events = Event.__table__  # type: ignore[attr-defined]
    merges = SubjectMerge.__table__  # type: ignore[attr-defined]
    with rt.data_engine.begin() as conn:
        for i in range(2):
            ref = f"ord-{tag}-{secrets.token_hex(4)}"
            person.order_refs.append(ref)
            oid = conn.execute(
                sa.insert(orders)
                .values(
                    order_ref=ref,
                    subject_id=sid,
                    ordered_at=T0 + timedelta(days=i),
                    status="completed",
                    currency="EUR",
                    total_minor=1999 + i,
                    discount_minor=0,
                    value_base=19.99 + i,
                    source="shop.csv",
                )
                .returning(orders.c.id)
            ).scalar_one()
            conn.execute(
                sa.insert(items).values(
                    order_id=oid, sku="SKU-1", name="Widget", price_minor=1999, quantity=1
                )
            )
        for i in range(2):
            mid = f"msg-{tag}-{secrets.token_hex(6)}"
            person.message_ids.append(mid)
            props = json.dumps({"note": secret_prop, "i": i})
            conn.execute(
                sa.insert(events).values(
                    message_id=mid,
                    subject_id=sid,
                    type="track",
                    name="Product Viewed",
                    properties_ct=rt.vault.encrypt(sid, event_field(mid), props),
                    occurred_at=T0 + timedelta(hours=i),
                    received_at=T0 + timedelta(hours=i),
                    source="web",
                )
            )
        conn.execute(
            sa.insert(merges).values(
                survivor_id=sid, merged_id=secrets.token_hex(16), linked_by="email", merged_at=T0
            )
        )
        consent.record_consent(
            conn=conn,
            subject_id=sid,
            purpose="email_marketing",
            status="granted",
            occurred_at=T0,
            source="web",
            mechanism="checkbox",
            recorded_by="signup-form",
            notice_version="v3",
        )
        seeded = {"subjects", "identities", "pii_records", "orders", "events", "subject_merges"}
        seeded |= {"consent_events"}
        # the audit log is hash-chained: real records only (the caller writes them)
        seeded |= {"audit_log", "audit_subjects"}
        live = set(sa.inspect(conn).get_table_names())
        for table in metadata.sorted_tables:
            if table.name in seeded or table.name not in live or not subject_columns(table):
                continue
            insert_generic(conn, table, sid)
    return person
