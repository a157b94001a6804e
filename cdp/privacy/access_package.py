"""The access / portability package: everything cdp holds on one person, machine-readable.

The package is JSON that validates against the published schema ``audit/access-package.schema.json``
(checked here before it is stored, so a package that does not match is never handed out) and is
rendered for people as ``audit/access-package.html.j2``. Sections: decrypted personal data, the
identity kinds held, orders with items, events with decrypted properties, consent state and full
history, every table the registry files under ``traits``, ``segments`` and ``recipients`` (whoever
owns them), restrictions, privacy requests, the audit trail of who read the person's data,
and ``processing``: the information art. 15(1) owes beside the data (purposes, categories,
retention, sources, profiling, rights, complaint), generated from the configuration
(:mod:`cdp.privacy.processing_notice`).

A person merged from several subjects (:mod:`cdp.profiles.merge`) is served under every id they
had (:mod:`cdp.profiles.former_ids`, listed in ``subject.former_ids``): the audit log keeps
naming the id a record was written under, and a row left under an absorbed id (a recipients
ledger row an export wrote after the merge) is the person's all the same. The sections read
under every id are the registry's, restrictions, privacy requests and the audit trail; orders,
events, identities and consent are moved by the merge itself.

The package is stored encrypted under the subject's data key (``privacy_payloads``, kind
``package``): erasure of the person destroys it with everything else.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import sqlalchemy as sa
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.engine import Connection

from cdp.audit.chain import format_at
from cdp.consent import ledger_state
from cdp.db.all_models import metadata
from cdp.db.models import Identity, Subject
from cdp.ingest.customer_record import CUSTOM_TRAITS_FIELD
from cdp.privacy.models import PrivacyRequest, Restriction
from cdp.privacy.processing_notice import processing_section
from cdp.privacy.registry import present_entries
from cdp.profiles.former_ids import former_ids
from cdp.profiles.merge import event_field
from cdp.profiles.models import Event, Order, OrderItem
from cdp.profiles.pii_records import read_one
from cdp.runtime import Runtime

AUDIT_DIR = Path(__file__).resolve().parents[2] / "audit"
SCHEMA_PATH = AUDIT_DIR / "access-package.schema.json"
HTML_TEMPLATE = "access-package.html.j2"
FORMAT = "cdp-access-package"
VERSION = 2
GENERIC_SECTIONS = ("traits", "segments", "recipients")


def _iso(value: datetime | None) -> str | None:
    return format_at(value) if value is not None else None


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_at(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _rows(conn: Connection, table: sa.Table, where: Any, order: Any = None) -> list[Any]:
    query = sa.select(table).where(where)
    if order is not None:
        query = query.order_by(order)
    return list(conn.execute(query))


def _personal_data(runtime: Runtime, conn: Connection, subject_id: str) -> dict[str, Any]:
    """The decrypted vault fields; ``custom_traits`` (one JSON object in the vault) as an
    object, not a string of JSON inside the JSON (art. 20: machine-readable)."""
    sealed = read_one(conn, subject_id)
    fields: dict[str, Any] = dict(sorted(runtime.vault.decrypt_fields(subject_id, sealed).items()))
    if CUSTOM_TRAITS_FIELD in fields:
        fields[CUSTOM_TRAITS_FIELD] = json.loads(fields[CUSTOM_TRAITS_FIELD])
    return fields


def _orders(conn: Connection, subject_id: str) -> list[dict[str, Any]]:
    orders = Order.__table__  # type: ignore[attr-defined]
    items = OrderItem.__table__  # type: ignore[attr-defined]
    out = []
    for o in _rows(conn, orders, orders.c.subject_id == subject_id, orders.c.ordered_at):
        lines = _rows(conn, items, items.c.order_id == o.id, items.c.id)
        out.append(
            {
                "order_ref": o.order_ref,
                "ordered_at": _iso(o.ordered_at),
                "status": o.status,
                "currency": o.currency,
                "total_minor": o.total_minor,
                "discount_minor": o.discount_minor,
                "coupon": o.coupon,
                "source": o.source,
                "items": [
                    {
                        "product_id": i.product_id,
                        "sku": i.sku,
                        "category": i.category,
                        "name": i.name,
                        "price_minor": i.price_minor,
                        "quantity": i.quantity,
                    }
                    for i in lines
                ],
            }
        )
    return out


def _events(runtime: Runtime, conn: Connection, subject_id: str) -> list[dict[str, Any]]:
    events = Event.__table__  # type: ignore[attr-defined]
    out = []
    for e in _rows(conn, events, events.c.subject_id == subject_id, events.c.occurred_at):
        props: Any = {}
        if e.properties_ct is not None:
            props = json.loads(
                runtime.vault.decrypt(subject_id, event_field(e.message_id), bytes(e.properties_ct))
            )
        out.append(
            {
                "message_id": e.message_id,
                "type": e.type,
                "name": e.name,
                "occurred_at": _iso(e.occurred_at),
                "received_at": _iso(e.received_at),
                "source": e.source,
                "properties": props,
            }
        )
    return out


def _consent(conn: Connection, subject_id: str) -> dict[str, Any]:
    proof = ledger_state.consent_proof(conn=conn, subject_id=subject_id)
    return {
        "current": [
            {
                "purpose": s.purpose,
                "status": s.status,
                "is_default": s.is_default,
                "occurred_at": _iso(s.occurred_at),
                "source": s.source,
                "mechanism": s.mechanism,
                "notice_version": s.notice_version,
            }
            for s in proof.states.values()
        ],
        "history": [
            {
                "purpose": r.purpose,
                "status": r.status,
                "occurred_at": _iso(r.occurred_at),
                "recorded_at": _iso(r.recorded_at),
                "source": r.source,
                "notice_version": r.notice_version,
                "mechanism": r.mechanism,
                "recorded_by": r.recorded_by,
            }
            for r in proof.history
        ],
    }


def _generic(conn: Connection, section: str, ids: list[str]) -> list[dict[str, Any]]:
    """Rows of every registered table filed under ``section`` naming any of the person's
    ``ids`` (binary columns left out)."""
    out = []
    live = set(sa.inspect(conn).get_table_names())
    for entry in present_entries(metadata, live):
        if entry.section != section:
            continue
        table = metadata.tables[entry.table]
        cols = [c for c in table.columns if not isinstance(c.type, sa.LargeBinary)]
        rows = conn.execute(sa.select(*cols).where(table.c[entry.column].in_(ids))).mappings()
        out.append(
            {
                "table": entry.table,
                "rows": [{k: _plain(v) for k, v in r.items()} for r in rows],
            }
        )
    return out


def _name_recipients(conn: Connection, sections: list[dict[str, Any]]) -> None:
    """Give each ``export_recipients`` row its destination's name, kind and purpose: the person
    is owed who received their data, not an internal id (a deleted destination keeps its id)."""
    table = metadata.tables.get("export_destinations")
    rows = [row for s in sections if s["table"] == "export_recipients" for row in s["rows"]]
    ids = sorted({row["destination_id"] for row in rows if row.get("destination_id")})
    if table is None or not ids:
        return
    found = {
        r.id: r
        for r in conn.execute(
            sa.select(table.c.id, table.c.name, table.c.kind, table.c.purpose).where(
                table.c.id.in_(ids)
            )
        )
    }
    for row in rows:
        known = found.get(row.get("destination_id"))
        if known is not None:
            row["destination_name"] = known.name
            row["destination_kind"] = known.kind
            row["purpose"] = known.purpose


def _name_segments(conn: Connection, sections: list[dict[str, Any]]) -> None:
    """Give each ``segment_snapshot_members`` row its segment's name and description, the rule's
    version and when it was computed: the person is owed which audience they were put in, not an
    internal computation id (a deleted segment takes its computations and snapshots with it)."""
    comps = metadata.tables.get("segment_computations")
    segs = metadata.tables.get("segments")
    snapshots = [s for s in sections if s["table"] == "segment_snapshot_members"]
    rows = [row for s in snapshots for row in s["rows"]]
    ids = sorted({row["computation_id"] for row in rows})
    if comps is None or segs is None or not ids:
        return
    found = {
        r.id: r
        for r in conn.execute(
            sa.select(
                comps.c.id, segs.c.name, segs.c.description, comps.c.version, comps.c.computed_at
            )
            .join(segs, segs.c.id == comps.c.segment_id)
            .where(comps.c.id.in_(ids))
        )
    }
    for row in rows:
        known = found.get(row["computation_id"])
        if known is not None:
            row["segment"] = known.name
            row["segment_description"] = known.description
            row["segment_version"] = known.version
            row["computed_at"] = _iso(known.computed_at)
    for section in snapshots:  # oldest computation first
        section["rows"].sort(key=lambda r: (r.get("computed_at") or "", r["computation_id"]))


def _audit_trail(conn: Connection, ids: list[str]) -> list[dict[str, Any]]:
    """The audit records naming any of the person's ``ids``: the log is append-only, so a record
    written before a merge names the absorbed id (once each, a record may name several)."""
    log = metadata.tables.get("audit_log")
    index = metadata.tables.get("audit_subjects")
    if log is None or index is None:
        return []
    rows = conn.execute(
        sa.select(log)
        .where(log.c.seq.in_(sa.select(index.c.seq).where(index.c.subject_id.in_(ids))))
        .order_by(log.c.seq)
    )
    return [
        {
            "seq": r.seq,
            "at": _iso(r.at),
            "principal": r.principal_name,
            "roles": [x for x in r.roles.split(",") if x],
            "action": r.action,
            "resource": r.resource,
            "fields": json.loads(r.fields),
            "purpose": r.purpose,
            "outcome": r.outcome,
        }
        for r in rows
    ]


def build(
    *, runtime: Runtime, conn: Connection, subject_id: str, request_id: str, generated_at: datetime
) -> dict[str, Any]:
    """Assemble the package of ``subject_id`` (decrypting under its key) and validate it."""
    subjects = Subject.__table__  # type: ignore[attr-defined]
    ident = Identity.__table__  # type: ignore[attr-defined]
    restr = Restriction.__table__  # type: ignore[attr-defined]
    reqs = PrivacyRequest.__table__  # type: ignore[attr-defined]
    subj = conn.execute(sa.select(subjects).where(subjects.c.id == subject_id)).one()
    former = former_ids(conn, subject_id)
    ids = [subject_id, *(f.subject_id for f in former)]
    package: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "generated_at": format_at(generated_at),
        "request_id": request_id,
        "subject": {
            "id": subject_id,
            "created_at": _iso(subj.created_at),
            "signed_up_at": _iso(subj.signed_up_at),
            "former_ids": [
                {"id": f.subject_id, "merged_at": _iso(f.merged_at), "linked_by": f.linked_by}
                for f in former
            ],
        },
        "personal_data": _personal_data(runtime, conn, subject_id),
        "identities": [
            {"kind": r.kind, "added_at": _iso(r.created_at)}
            for r in _rows(conn, ident, ident.c.subject_id == subject_id, ident.c.id)
        ],
        "orders": _orders(conn, subject_id),
        "events": _events(runtime, conn, subject_id),
        "consent": _consent(conn, subject_id),
        **{s: _generic(conn, s, ids) for s in GENERIC_SECTIONS},
        "restrictions": [
            {"started_at": _iso(r.started_at), "lifted_at": _iso(r.lifted_at)}
            for r in _rows(conn, restr, restr.c.subject_id.in_(ids), restr.c.id)
        ],
        "privacy_requests": [
            {
                "id": r.id,
                "type": r.type,
                "status": r.status,
                "received_at": _iso(r.received_at),
                "completed_at": _iso(r.completed_at),
            }
            for r in _rows(conn, reqs, reqs.c.subject_id.in_(ids), reqs.c.received_at)
        ],
        "audit_trail": _audit_trail(conn, ids),
    }
    _name_recipients(conn, package["recipients"])
    _name_segments(conn, package["segments"])
    package["processing"] = processing_section(runtime.settings, package)
    validate(package)
    return package


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The published JSON Schema of the package."""
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return loaded


def validate(package: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``package`` matches the published schema."""
    jsonschema.validate(package, schema(), cls=jsonschema.Draft202012Validator)


def section_size(package: dict[str, Any], section: str) -> int:
    """How many entries a section of ``package`` holds: rows, not tables, for the registry's
    sections (each lists every table filed under it, even one with no row of the person); the
    history of choices for ``consent`` (its current state is listed for every purpose, defaults
    included, whether or not the person ever chose)."""
    value = package.get(section)
    if section in GENERIC_SECTIONS:
        return sum(len(table["rows"]) for table in value or [])
    if section == "consent":
        return len((value or {}).get("history", []))
    return len(value or [])


def fields_of(package: dict[str, Any]) -> list[str]:
    """The field and section names a package discloses (for its audit record): the personal
    fields held, and the sections that hold at least one entry (:func:`section_size`)."""
    return sorted(package["personal_data"]) + [
        s
        for s in ("orders", "events", "consent", *GENERIC_SECTIONS, "audit_trail")
        if section_size(package, s)
    ]


def render_html(package: dict[str, Any]) -> str:
    """The human-readable summary of a package (autoescaped HTML)."""
    env = Environment(
        loader=FileSystemLoader(str(AUDIT_DIR)),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template(HTML_TEMPLATE).render(p=package)
