"""Segment-compatible ingestion: validate a request's messages and store them in one transaction.

Every valid message of a request is written in a single transaction (shared with concurrent
requests by :mod:`cdp.ingest.group_commit`; a request still lands whole or not at all), in this
order: the ``Sec-GPC`` withdrawal of ``ad_audiences`` (when the request carries ``Sec-GPC: 1``),
consent from ``context.consent.categoryPreferences``, identify/alias identities and traits, orders,
events.
So a GPC signal is on the ledger before anything else from that request, and a request either
lands whole or not at all. Invalid messages are reported by index and field (no values); the valid
ones of the same request are still stored (Segment drops bad messages and keeps the rest). An
``Order Completed`` track whose order part alone is invalid is stored as an event without its
order (the event happened), and the order's problems are reported.

Replays add nothing: events by ``messageId`` (``events.message_id``), orders by ``order_id``,
identify/alias by ``seen_messages``, consent by the ledger's dedupe key and because the API
records changes of state and at most one repetition per purpose and day
(:func:`cdp.ingest.consents.change_only_records`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ValidationError

from cdp.clock import Clock, utcnow
from cdp.ingest.batch import BatchContext, Outcome
from cdp.ingest.batch_commit import converter_for
from cdp.ingest.consents import write_consents
from cdp.ingest.customer_record import CustomerRecord
from cdp.ingest.customers import write_customers
from cdp.ingest.events import write_events
from cdp.ingest.group_commit import committer_for
from cdp.ingest.models import SeenMessage
from cdp.ingest.orders import write_orders
from cdp.ingest.pipeline import record_context
from cdp.ingest.records import ConsentRecord, EventRecord, OrderRecord
from cdp.ingest.segment_models import (
    ORDER_COMPLETED,
    SegmentMessage,
    alias_data,
    consent_choices,
    customer_data,
    event_data,
    order_data,
    total_field,
)
from cdp.observability import count_ingest
from cdp.runtime import Runtime
from cdp.validation import safe_location

MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024


@dataclass(frozen=True)
class Invalid:
    """Why message ``index`` was not accepted (field names and rules, never values)."""

    index: int
    field: str
    message: str
    order_only: bool = False
    """The problem is in an ``Order Completed``'s order part: its event was stored, not the
    order."""


@dataclass
class SegmentResult:
    received: int
    invalid: list[Invalid] = field(default_factory=list)
    outcome: Outcome = field(default_factory=Outcome)


@dataclass
class _Plan:
    consents: list[tuple[int, ConsentRecord]] = field(default_factory=list)
    gpc: list[tuple[int, ConsentRecord]] = field(default_factory=list)
    customers: list[tuple[int, CustomerRecord]] = field(default_factory=list)
    orders: list[tuple[int, OrderRecord]] = field(default_factory=list)
    events: list[tuple[int, EventRecord]] = field(default_factory=list)
    seen: dict[str, str] = field(default_factory=dict)
    """identify/alias message key -> type (recorded in seen_messages)."""
    keys: dict[int, str] = field(default_factory=dict)


def message_key(raw: dict[str, Any]) -> str:
    """``messageId``, or a hash of the message's content when the sender gave none."""
    mid = raw.get("messageId")
    if isinstance(mid, str) and mid:
        return mid[:128]
    body = json.dumps(raw, sort_keys=True, default=str, separators=(",", ":"))
    return "h-" + hashlib.sha256(body.encode()).hexdigest()[:60]


def _errors(index: int, prefix: str, exc: ValidationError) -> list[Invalid]:
    out = []
    for e in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = safe_location(e["loc"], e["type"])
        out.append(Invalid(index, f"{prefix}{loc}" if loc else prefix.rstrip(".") or "message",
                           e["msg"]))  # fmt: skip
    return out


def _record(
    model: type[BaseModel], data: dict[str, Any], ctx: dict[str, Any], i: int, prefix: str
) -> tuple[Any, list[Invalid]]:
    try:
        return model.model_validate(data, context=ctx), []
    except ValidationError as exc:
        return None, _errors(i, prefix, exc)


def _amount_named(problem: Invalid, msg: SegmentMessage, data: dict[str, Any]) -> Invalid:
    """An order total's problem, named by the property it came from (``total`` or ``revenue``)."""
    if problem.field != "properties.total":
        return problem
    named = replace(problem, field=f"properties.{total_field(msg.properties)}")
    if "total" not in data:  # neither was sent
        return replace(named, message="an order needs total or revenue")
    return named


def plan_messages(
    runtime: Runtime, messages: Sequence[Any], *, gpc: bool, source: str, clock: Clock
) -> tuple[_Plan, list[Invalid], int]:
    """Validate every message and turn the valid ones into records (nothing is written)."""
    now = clock()
    converter = converter_for(runtime)
    ctx = record_context(runtime, converter, now)
    plan = _Plan()
    invalid: list[Invalid] = []
    subjects: dict[tuple[str | None, str | None], int] = {}
    ignored = 0
    for i, raw in enumerate(messages):
        if not isinstance(raw, dict):
            invalid.append(Invalid(i, "message", "a message must be a JSON object"))
            continue
        try:
            msg = SegmentMessage.model_validate(raw)
        except ValidationError as exc:
            invalid.extend(_errors(i, "", exc))
            continue
        problems = [Invalid(i, f, m) for f, m in msg.checks()]
        if problems:
            invalid.extend(problems)
            continue
        at = msg.when(now)
        if at > ctx["latest_time"]:
            # a device clock running fast (a ``timestamp`` ahead of the arrival): the message is
            # kept, dated when it arrived, rather than dropped or dated in the future
            at = now
        key = message_key(raw)
        plan.keys[i] = key
        built: list[tuple[str, Any]] = []
        errors: list[Invalid] = []
        order_errors: list[Invalid] = []
        if msg.type in ("identify", "alias"):
            data = customer_data(msg) if msg.type == "identify" else alias_data(msg)
            rec, errs = _record(CustomerRecord, data, ctx, i, "traits.")
            built.append(("customer", rec))
            errors += errs
        elif msg.type in ("track", "page", "screen"):
            if msg.type == "track" and msg.event == ORDER_COMPLETED:
                data = order_data(msg, at, converter.base)
                rec, order_errors = _record(OrderRecord, data, ctx, i, "properties.")
                order_errors = [_amount_named(e, msg, data) for e in order_errors]
                if not order_errors:
                    built.append(("order", rec))
            ev = event_data(msg, at)
            ev["message_id"] = key
            rec, errs = _record(EventRecord, ev, ctx, i, "")
            built.append(("event", rec))
            errors += errs
        else:
            ignored += 1  # group: accepted, nothing of it is stored yet
        choices = consent_choices(msg)
        if gpc:
            choices.pop("ad_audiences", None)  # the GPC signal overrides a banner's grant
        for purpose, status in choices.items():
            rec, errs = _record(
                ConsentRecord,
                {
                    "customer_id": msg.user_id,
                    "anonymous_id": msg.anonymous_id,
                    "purpose": purpose,
                    "status": status,
                    "occurred_at": at,
                    "source": source,
                    "mechanism": "sdk",
                },
                ctx,
                i,
                "context.consent.",
            )
            built.append(("consent", rec))
            errors += errs
        subject = (msg.user_id, msg.anonymous_id)
        if gpc and subject not in subjects:
            # one GPC withdrawal a subject the request names, built like every other record,
            # so that a problem with it is this message's 400 detail, not the request's 500
            rec, errs = _record(
                ConsentRecord,
                {
                    "customer_id": msg.user_id,
                    "anonymous_id": msg.anonymous_id,
                    "purpose": "ad_audiences",
                    "status": "withdrawn",
                    "occurred_at": now,
                    "source": source,
                    "mechanism": "gpc",
                },
                ctx,
                i,
                "",
            )
            built.append(("gpc", rec))
            errors += errs
        if errors:
            invalid.extend(order_errors + errors)
            continue
        # the event happened (Segment's meaning of a track): an Order Completed whose order part
        # is invalid is stored as an event, and its order's problems are reported
        stored = "(the event was stored, its order was not)"
        invalid.extend(
            replace(e, message=f"{e.message} {stored}", order_only=True) for e in order_errors
        )
        for kind, rec in built:
            if kind == "customer":
                plan.customers.append((i, rec))
                plan.seen[key] = msg.type
            elif kind == "order":
                plan.orders.append((i, rec))
            elif kind == "event":
                plan.events.append((i, rec))
            elif kind == "gpc":
                plan.gpc.append((i, rec))
            else:
                plan.consents.append((i, rec))
        subjects.setdefault(subject, i)
    return plan, invalid, ignored


def _write(plan: _Plan) -> Any:
    def writer(ctx: BatchContext, _items: Sequence[tuple[int, Any]]) -> Outcome:
        out = Outcome()
        sm = SeenMessage.__table__  # type: ignore[attr-defined]
        seen = set()
        if plan.seen:
            seen = set(
                ctx.conn.execute(
                    sa.select(sm.c.message_id).where(sm.c.message_id.in_(sorted(plan.seen)))
                ).scalars()
            )
        customers = [(i, r) for i, r in plan.customers if plan.keys[i] not in seen]
        out.duplicates += len(plan.customers) - len(customers)
        out.add(write_consents(ctx, plan.gpc, only_changes=True))
        out.add(write_consents(ctx, plan.consents, only_changes=True))
        out.add(write_customers(ctx, customers, live=True))
        out.add(write_orders(ctx, plan.orders))
        out.add(write_events(ctx, plan.events))
        new_seen = [
            {"message_id": k, "kind": v, "received_at": ctx.now}
            for k, v in plan.seen.items()
            if k not in seen
        ]
        if new_seen:
            ctx.conn.execute(sa.insert(sm), new_seen)
        return out

    return writer


def ingest_messages(
    *,
    runtime: Runtime,
    source_name: str,
    messages: Sequence[Any],
    gpc: bool = False,
    clock: Clock = utcnow,
) -> SegmentResult:
    """Validate and store one request's messages (see the module doc)."""
    source = f"segment:{source_name}"[:64]
    plan, invalid, _ignored = plan_messages(runtime, messages, gpc=gpc, source=source, clock=clock)
    result = SegmentResult(received=len(messages), invalid=invalid)
    if plan.gpc or plan.consents or plan.customers or plan.orders or plan.events:
        result.outcome = committer_for(runtime.data_engine).submit(
            runtime=runtime, writer=_write(plan), source=source, clock=clock
        )
    count_ingest(
        channel="http",
        kind="segment",
        accepted=result.outcome.inserted + result.outcome.updated,
        # an Order Completed whose order alone was refused had its event stored: not rejected
        rejected=len({i.index for i in invalid} - {i.index for i in invalid if i.order_only}),
        duplicates=result.outcome.duplicates,
    )
    return result
