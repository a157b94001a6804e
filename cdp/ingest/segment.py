"""Segment-compatible ingestion: validate a request's messages and store them in one transaction.

Every valid message of a request is written in a single transaction (shared with concurrent
requests by :mod:`cdp.ingest.group_commit`; a request still lands whole or not at all), in this
order: the ``Sec-GPC`` withdrawal of ``ad_audiences`` (when the request carries ``Sec-GPC: 1``),
consent from ``context.consent.categoryPreferences``, identify/alias identities and traits, orders,
events.
So a GPC signal is on the ledger before anything else from that request, and a request either
lands whole or not at all. Invalid messages are reported by index and field (no values); the valid
ones of the same request are still stored (Segment drops bad messages and keeps the rest). Of an
invalid message, its withdrawals are still recorded when a valid id names its subject (never its
grants: :meth:`cdp.ingest.segment_plan.Planner.withdrawals`). An ``Order Completed`` track whose
order part alone is invalid is stored as an event without its order (the event happened), and the
order's problems are reported; so is an order that contradicts the stored one
(:mod:`cdp.ingest.segment_orders`) or changes its currency.

A track, page or screen older than the longest retention window of events when it arrives (its
time as stored, corrected by ``sentAt``) is accepted and not stored, and an ``Order Completed``
older than the support window stores its order without the personal link
(:mod:`cdp.ingest.events`, :mod:`cdp.ingest.orders`): the message is valid, nothing the sender
could change makes it storable, so it is answered like an accepted one (a 400 would make the
SDKs report a failed batch and drop it, the valid messages stored with it included); it is
counted (``expired``, in the ingestion metric and a log line) instead.

Replays add nothing: events by ``messageId`` (``events.message_id``), orders by ``order_id``,
identify/alias by ``seen_messages`` (a second copy within the request too), consent by the
ledger's dedupe key and because the API records changes of state and at most one repetition per
purpose and day (:func:`cdp.ingest.consents.change_only_records`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from cdp.clock import Clock, utcnow
from cdp.ingest.batch import REFUSALS, BatchContext, Outcome
from cdp.ingest.consents import write_consents
from cdp.ingest.customers import write_customers
from cdp.ingest.events import write_events
from cdp.ingest.group_commit import committer_for
from cdp.ingest.models import SeenMessage
from cdp.ingest.orders import write_orders
from cdp.ingest.segment_alias import customer_claims
from cdp.ingest.segment_orders import order_conflicts
from cdp.ingest.segment_plan import STORED, Invalid, Plan, plan_messages
from cdp.logging import get_logger
from cdp.observability import count_ingest
from cdp.runtime import Runtime

log = get_logger("cdp.ingest")

MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024


@dataclass
class SegmentResult:
    received: int
    invalid: list[Invalid] = field(default_factory=list)
    outcome: Outcome = field(default_factory=Outcome)


def _write(plan: Plan) -> Any:
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
        out.duplicates += len(plan.customers) - len(customers) + plan.duplicates
        out.add(write_consents(ctx, plan.gpc, only_changes=True))
        out.add(write_consents(ctx, plan.consents, only_changes=True))
        claims = customer_claims(ctx, customers, plan.aliases, plan.user_ids())
        out.add(write_customers(ctx, customers, live=True, claims=claims))
        orders, conflicts = order_conflicts(ctx, plan.orders)
        out.rejects.extend(conflicts)
        out.add(write_orders(ctx, orders))
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


def _order_refusals(outcome: Outcome) -> list[Invalid]:
    """What the writers refused that the sender should hear of: an order in conflict with the
    stored one (:mod:`cdp.ingest.segment_orders`) or in another currency (``currency_changed``),
    as an ``Order Completed``'s order-only problem (its event was stored). A record refused as
    ``erased`` or ``rectified`` is not reported: such a message is answered 200, as documented."""
    return [
        Invalid(
            r.position,
            f"properties.{r.fields[0] if r.fields else 'order_id'}",
            f"{r.message} {STORED}",
            order_only=True,
        )
        for r in outcome.rejects
        if r.reason not in REFUSALS
    ]


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
        refused = _order_refusals(result.outcome)
        if refused:
            invalid = result.invalid = sorted(invalid + refused, key=lambda p: p.index)
    count_ingest(
        channel="http",
        kind="segment",
        accepted=result.outcome.inserted + result.outcome.updated,
        # an Order Completed whose order alone was refused had its event stored: not rejected
        rejected=len({i.index for i in invalid} - {i.index for i in invalid if i.order_only}),
        duplicates=result.outcome.duplicates,
        expired=result.outcome.expired,
    )
    if result.outcome.expired:
        log.info(
            "segment records past every retention window",
            source=source,
            expired=result.outcome.expired,
        )
    return result
