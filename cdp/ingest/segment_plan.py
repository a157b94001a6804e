"""Planning a Segment request: every message validated and turned into records, nothing written.

A valid message becomes its records (identify/alias: a customer; track/page/screen: an event, and
an order for ``Order Completed``; consent from ``context.consent.categoryPreferences`` and the
request's ``Sec-GPC`` signal). An invalid message is reported by index and field (no values) and
gives only its withdrawals, when a valid id names its subject (:meth:`Planner.withdrawals`).
:mod:`cdp.ingest.segment` writes the plan.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from cdp.clock import Clock
from cdp.ingest.batch_commit import converter_for
from cdp.ingest.customer_record import CustomerRecord
from cdp.ingest.pipeline import record_context
from cdp.ingest.records import ConsentRecord, EventRecord, OrderRecord
from cdp.ingest.segment_messages import ORDER_COMPLETED, MessageBasics, SegmentMessage, salvage
from cdp.ingest.segment_models import (
    alias_data,
    consent_choices,
    customer_data,
    event_data,
    order_data,
    total_field,
)
from cdp.runtime import Runtime
from cdp.validation import safe_location

STORED = "(the event was stored, its order was not)"
"""Ends the detail of an ``Order Completed`` whose order alone was refused."""


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
class Plan:
    consents: list[tuple[int, ConsentRecord]] = field(default_factory=list)
    gpc: list[tuple[int, ConsentRecord]] = field(default_factory=list)
    customers: list[tuple[int, CustomerRecord]] = field(default_factory=list)
    orders: list[tuple[int, OrderRecord]] = field(default_factory=list)
    events: list[tuple[int, EventRecord]] = field(default_factory=list)
    seen: dict[str, str] = field(default_factory=dict)
    """identify/alias message key -> type (recorded in seen_messages)."""
    duplicates: int = 0
    """identify/alias messages whose key an earlier message of the request carries."""
    aliases: dict[int, str] = field(default_factory=dict)
    """alias message index -> its ``previousId`` (:mod:`cdp.ingest.segment_alias`)."""
    keys: dict[int, str] = field(default_factory=dict)

    def user_ids(self) -> set[str]:
        """The customer ids (``userId``) the planned records carry."""
        records = self.consents + self.gpc + self.customers + self.orders + self.events
        return {r.customer_id for _, r in records if r.customer_id}


def message_key(raw: dict[str, Any]) -> str:
    """``messageId``, or a hash of the message's content when the sender gave none. The content
    leaves ``sentAt`` out: a library sets it anew on every attempt (a batch's, copied into its
    messages, too), so a retried message would otherwise be a new one each time."""
    mid = raw.get("messageId")
    if isinstance(mid, str) and mid:
        return mid[:128]
    content = {k: v for k, v in raw.items() if k != "sentAt"}
    body = json.dumps(content, sort_keys=True, default=str, separators=(",", ":"))
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


def _consent(
    basics: MessageBasics, purpose: str, status: str, at: datetime, mechanism: str, source: str
) -> dict[str, Any]:
    return {
        "customer_id": basics.user_id,
        "anonymous_id": basics.anonymous_id,
        "purpose": purpose,
        "status": status,
        "occurred_at": at,
        "source": source,
        "mechanism": mechanism,
    }


@dataclass
class Planner:
    """Turns the messages of one request into a :class:`Plan` (nothing is written)."""

    gpc: bool
    source: str
    now: datetime
    ctx: dict[str, Any]
    plan: Plan = field(default_factory=Plan)
    gpc_subjects: set[tuple[str | None, str | None]] = field(default_factory=set)
    """Subjects whose GPC withdrawal is planned: one a subject the request names."""

    def dated(self, basics: MessageBasics) -> datetime:
        at = basics.when(self.now)
        if at > self.ctx["latest_time"]:
            # a device clock running fast (a ``timestamp`` ahead of the arrival): the message is
            # kept, dated when it arrived, rather than dropped or dated in the future
            return self.now
        return at

    def consents(
        self, basics: MessageBasics, i: int, at: datetime, key: str
    ) -> tuple[list[tuple[str, Any]], list[Invalid]]:
        """A valid message's consent records: its banner choices (a GPC signal overrides an
        ``ad_audiences`` grant) and the request's GPC withdrawal for its subject. Each is keyed
        by the message (``key``), so a replay of it records nothing, whenever it arrives."""
        built: list[tuple[str, Any]] = []
        errors: list[Invalid] = []
        choices = consent_choices(basics)
        if self.gpc:
            choices.pop("ad_audiences", None)  # the GPC signal overrides a banner's grant
        for purpose, status in choices.items():
            data = _consent(basics, purpose, status, at, "sdk", self.source)
            rec, errs = _record(ConsentRecord, data, self.ctx, i, "context.consent.")
            built.append(("consent", rec and rec.from_message(key)))
            errors += errs
        if self.gpc and (basics.user_id, basics.anonymous_id) not in self.gpc_subjects:
            # built like every other record, so that a problem with it is this message's 400
            # detail, not the request's 500
            data = _consent(basics, "ad_audiences", "withdrawn", self.now, "gpc", self.source)
            rec, errs = _record(ConsentRecord, data, self.ctx, i, "")
            built.append(("gpc", rec and rec.from_message(key)))
            errors += errs
        return built, errors

    def withdrawals(self, basics: MessageBasics, i: int, key: str) -> None:
        """An invalid message's withdrawals (its banner's ``false`` choices, the request's GPC
        signal), planned when a valid ``userId`` or ``anonymousId`` names its subject: a
        withdrawal is never lost with the rest of a message. Its grants are not recorded. Each
        is dated as the message (its time when valid, else its arrival; at its arrival too when
        the record refuses the message's time)."""
        if not (basics.user_id or basics.anonymous_id):
            return
        at = self.dated(basics)
        wanted = [
            ("consent", purpose, at, "sdk")
            for purpose, status in consent_choices(basics).items()
            if status == "withdrawn"
        ]
        if self.gpc and (basics.user_id, basics.anonymous_id) not in self.gpc_subjects:
            wanted.insert(0, ("gpc", "ad_audiences", self.now, "gpc"))
        for kind, purpose, when, mechanism in wanted:
            for moment in dict.fromkeys((when, self.now)):
                data = _consent(basics, purpose, "withdrawn", moment, mechanism, self.source)
                rec, errs = _record(ConsentRecord, data, self.ctx, i, "")
                if not errs:
                    self.add(i, kind, rec.from_message(key), basics)
                    break

    def add(self, i: int, kind: str, rec: Any, basics: MessageBasics) -> None:
        if kind == "gpc":
            self.plan.gpc.append((i, rec))
            self.gpc_subjects.add((basics.user_id, basics.anonymous_id))
        else:
            self.plan.consents.append((i, rec))


def plan_messages(
    runtime: Runtime, messages: Sequence[Any], *, gpc: bool, source: str, clock: Clock
) -> tuple[Plan, list[Invalid], int]:
    """Validate every message and turn the valid ones into records (nothing is written); of an
    invalid message, only its withdrawals (:meth:`Planner.withdrawals`)."""
    now = clock()
    converter = converter_for(runtime)
    ctx = record_context(runtime, converter, now)
    planner = Planner(gpc=gpc, source=source, now=now, ctx=ctx)
    plan = planner.plan
    invalid: list[Invalid] = []
    ignored = 0
    for i, raw in enumerate(messages):
        if not isinstance(raw, dict):
            invalid.append(Invalid(i, "message", "a message must be a JSON object"))
            continue
        try:
            msg = SegmentMessage.model_validate(raw)
        except ValidationError as exc:
            invalid.extend(_errors(i, "", exc))
            planner.withdrawals(salvage(raw), i, message_key(raw))
            continue
        key = message_key(raw)
        problems = [Invalid(i, f, m) for f, m in msg.checks()]
        if problems:
            invalid.extend(problems)
            planner.withdrawals(msg, i, key)
            continue
        at = planner.dated(msg)
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
        consents, errs = planner.consents(msg, i, at, key)
        built += consents
        errors += errs
        if errors:
            invalid.extend(order_errors + errors)
            planner.withdrawals(msg, i, key)
            continue
        # the event happened (Segment's meaning of a track): an Order Completed whose order part
        # is invalid is stored as an event, and its order's problems are reported
        invalid.extend(
            replace(e, message=f"{e.message} {STORED}", order_only=True) for e in order_errors
        )
        for kind, rec in built:
            if kind == "customer":
                if key in plan.seen:  # a second copy in one request: a replay, as in two
                    plan.duplicates += 1
                    continue
                plan.customers.append((i, rec))
                plan.seen[key] = msg.type
                if msg.type == "alias":
                    plan.aliases[i] = rec.anonymous_id
            elif kind == "order":
                plan.orders.append((i, rec))
            elif kind == "event":
                plan.events.append((i, rec))
            else:
                planner.add(i, kind, rec, msg)
    return plan, invalid, ignored
