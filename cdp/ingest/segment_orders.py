"""``Order Completed`` orders that contradict the order cdp holds under their id.

An ``Order Completed`` carries no ``updated_at``, so by the orders rule (:mod:`cdp.ingest.orders`)
it never changes a stored order: the same order sent again (a replay, the shop firing the event
twice) is a duplicate. One that says something else about it — another total, discount, coupon or
currency than the stored order, or than an earlier ``Order Completed`` of the same request — is
a conflict the sender should hear of (a discount or coupon only when the message gives one:
left out or null, it says nothing against the stored one): :func:`order_conflicts` takes it out
and reports it (the caller answers it as the message's 400 detail; its event is stored). Not a
conflict: an order a file row has moved on since (a refund or cancellation, or a row dated by
``updated_at``): the ``Order Completed`` is older news, a duplicate. A stored order in another
currency is left to the order writer, which refuses it as ``currency_changed`` (as in a batch
file). Line items are not compared.
"""

from __future__ import annotations

from collections.abc import Sequence

from cdp.ingest.batch import BatchContext, Reject, existing
from cdp.ingest.money import to_minor
from cdp.ingest.records import OrderRecord
from cdp.profiles.models import Order

CONFLICT = "order_conflict"

_Terms = tuple[str, int, int, str | None]
"""currency, total and discount in minor units, coupon."""
_NAMES = ("currency", "total", "discount", "coupon")
_OPTIONAL = frozenset(("discount", "coupon"))
"""Compared only when the message gives them: one that leaves them out (or sends null) says
nothing against the stored ones."""


def _terms(r: OrderRecord) -> _Terms:
    return r.currency, to_minor(r.total, r.currency), to_minor(r.discount, r.currency), r.coupon


def order_conflicts(
    ctx: BatchContext, items: Sequence[tuple[int, OrderRecord]]
) -> tuple[list[tuple[int, OrderRecord]], list[Reject]]:
    """The orders to write, and a reject per conflicting one (position: its message index)."""
    if not items:
        return [], []
    ot = Order.__table__  # type: ignore[attr-defined]
    stored = existing(
        ctx.conn,
        ot.c.order_ref,
        (r.order_id for _, r in items),
        ot.c.status,
        ot.c.currency,
        ot.c.total_minor,
        ot.c.discount_minor,
        ot.c.coupon,
        ot.c.source_updated_at,
    )
    held: dict[str, _Terms] = {}
    moved_on: set[str] = set()
    for ref, row in stored.items():
        if row[1] == "completed" and row[6] is None:
            held[ref] = (row[2], row[3], row[4], row[5])
        else:
            moved_on.add(ref)
    kept: list[tuple[int, OrderRecord]] = []
    rejects: list[Reject] = []
    for position, r in items:
        theirs = held.get(r.order_id)
        if theirs is None and r.order_id not in moved_on:
            held[r.order_id] = _terms(r)  # the first copy of a new order: the others' yardstick
        if theirs is None:
            kept.append((position, r))
            continue
        mine = _terms(r)
        if r.order_id in stored and mine[0] != theirs[0]:
            kept.append((position, r))  # the order writer's currency_changed
            continue
        given = r.model_fields_set
        differ = [
            name
            for name, a, b in zip(_NAMES, mine, theirs, strict=True)
            if a != b and (name not in _OPTIONAL or name in given)
        ]
        if not differ:
            kept.append((position, r))  # the same order again: a duplicate
            continue
        rejects.append(
            Reject(
                position,
                CONFLICT,
                ("currency",) if "currency" in differ else ("order_id",),
                f"an order with this order_id is stored, or sent earlier in this request, with"
                f" another {' and '.join(differ)}; an Order Completed cannot change an order",
            )
        )
    return kept, rejects
