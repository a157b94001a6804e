"""Orders: idempotent by the shop's order id; line items written with their order.

An order id already stored is a duplicate, unless its status, total, discount or coupon changed
(a refund exported later): then the order row is updated and counted as ``updated``. Its line
items are not rewritten. Only new orders go through identity resolution (an order for an unknown
customer creates a subject holding just that identity).

A status only moves forward: ``completed`` → ``cancelled`` → ``refunded`` (:data:`STATUS_RANK`).
A record that would move a stored order back (an older export loaded after a refund) is a
duplicate, and several rows of one order in a file fold into the furthest one (the later row
among equals), so the outcome does not depend on row order or batch size and a second run of the
same files changes nothing. An order's currency never changes: a row giving a stored order
another currency is rejected (``currency_changed``); its amounts and line items are in the
stored currency's minor units.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from operator import itemgetter
from typing import Any

import sqlalchemy as sa

from cdp.ingest.batch import BatchContext, Outcome, Reject, claim_of, existing
from cdp.ingest.bulk import insert_tuples
from cdp.ingest.money import to_minor
from cdp.ingest.records import OrderRecord
from cdp.profiles.models import Order, OrderItem
from cdp.profiles.resolve import resolve

ORDER_COLUMNS = (
    "order_ref",
    "subject_id",
    "ordered_at",
    "status",
    "currency",
    "total_minor",
    "discount_minor",
    "value_base",
    "coupon",
    "source",
    "created_at",
    "updated_at",
)
ITEM_COLUMNS = ("order_id", "product_id", "sku", "category", "name", "price_minor", "quantity")
STATUS_RANK = {"completed": 0, "cancelled": 1, "refunded": 2}
"""How far along an order's status is: an update never moves it back."""


def _folded(items: Sequence[tuple[int, OrderRecord]]) -> tuple[list[tuple[int, OrderRecord]], int]:
    """One row per order id: the one with the furthest status (the later row among equals), at
    the position of the order's first row; and how many rows were folded away."""
    chosen: dict[str, tuple[int, OrderRecord]] = {}
    for position, r in items:
        held = chosen.get(r.order_id)
        if held is None:
            chosen[r.order_id] = (position, r)
        elif STATUS_RANK[r.status] >= STATUS_RANK[held[1].status]:
            chosen[r.order_id] = (held[0], r)
    return list(chosen.values()), len(items) - len(chosen)


class _Minor:
    """``to_minor`` remembered per (amount, currency) for a batch: a shop's prices repeat (equal
    decimals hash alike and give the same minor units, whatever their trailing zeros)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[Decimal, str], int] = {}

    def __call__(self, amount: Decimal, currency: str) -> int:
        value = self._seen.get((amount, currency))
        if value is None:
            value = self._seen[(amount, currency)] = to_minor(amount, currency)
        return value


def _order_row(
    ctx: BatchContext, r: OrderRecord, subject_id: str, minor: _Minor
) -> tuple[Any, ...]:
    total = minor(r.total, r.currency)
    return (
        r.order_id,
        subject_id,
        r.ordered_at,
        r.status,
        r.currency,
        total,
        minor(r.discount, r.currency),
        ctx.converter.value_base(total, r.currency),
        r.coupon,
        ctx.source[:64],
        ctx.now,
        ctx.now,
    )


def write_orders(ctx: BatchContext, items: Sequence[tuple[int, OrderRecord]]) -> Outcome:
    """Ingest one batch of orders in ``ctx.conn``'s transaction."""
    out = Outcome()
    if not items:
        return out
    conn = ctx.conn
    ot = Order.__table__  # type: ignore[attr-defined]
    it = OrderItem.__table__  # type: ignore[attr-defined]
    items, folded = _folded(items)
    out.duplicates += folded
    stored = existing(
        conn,
        ot.c.order_ref,
        (r.order_id for _, r in items),
        ot.c.status,
        ot.c.total_minor,
        ot.c.discount_minor,
        ot.c.coupon,
        ot.c.currency,
    )
    fresh: list[tuple[int, OrderRecord]] = []
    seen: set[str] = set()
    updates: dict[str, dict[str, Any]] = {}
    for position, r in items:
        seen.add(r.order_id)
        row = stored.get(r.order_id)
        if row is None:
            fresh.append((position, r))
            continue
        if row[5] != r.currency:
            out.rejects.append(
                Reject(
                    position,
                    "currency_changed",
                    ("currency",),
                    "the order is stored in another currency; an order's currency cannot change",
                )
            )
            continue
        now = (
            r.status,
            to_minor(r.total, r.currency),
            to_minor(r.discount, r.currency),
            r.coupon,
        )
        if tuple(row[1:5]) == now or STATUS_RANK[r.status] < STATUS_RANK[row[1]]:
            out.duplicates += 1  # the same, or older news than what is stored
        else:
            out.updated += 1
            updates[r.order_id] = {
                "ref": r.order_id,
                "st": r.status,
                "tm": now[1],
                "dm": now[2],
                "cp": r.coupon,
                "vb": ctx.converter.value_base(now[1], r.currency),
            }
    if updates:
        conn.execute(
            sa.update(ot)
            .where(ot.c.order_ref == sa.bindparam("ref"))
            .values(
                status=sa.bindparam("st"),
                total_minor=sa.bindparam("tm"),
                discount_minor=sa.bindparam("dm"),
                coupon=sa.bindparam("cp"),
                value_base=sa.bindparam("vb"),
                updated_at=ctx.now,
            ),
            list(updates.values()),
        )
    if not fresh:
        return out
    res = out.resolved(
        resolve(
            runtime=ctx.runtime,
            conn=conn,
            claims=[
                claim_of(
                    customer_id=r.customer_id,
                    email=r.email,
                    phone=r.phone,
                    anonymous_id=r.anonymous_id,
                )
                for _, r in fresh
            ],
            now=ctx.now,
        )
    )
    rows = []
    kept: list[OrderRecord] = []
    minor = _Minor()
    for i, (position, r) in enumerate(fresh):
        sid = res.subjects[i]
        if sid is None:
            out.rejects.append(Reject(position, "erased", (), "matches an erased subject"))
            continue
        rows.append(_order_row(ctx, r, sid, minor))
        kept.append(r)
    if not rows:
        return out
    rows.sort(key=itemgetter(0))  # order_ref: the unique index's order (see insert_rows)
    insert_tuples(conn, ot, ORDER_COLUMNS, rows)
    out.inserted += len(rows)
    ids = {ref: row[1] for ref, row in existing(conn, ot.c.order_ref, seen, ot.c.id).items()}
    item_rows = [
        (
            ids[r.order_id],
            li.product_id,
            li.sku,
            li.category,
            li.name,
            minor(li.price, r.currency),
            li.quantity,
        )
        for r in kept
        for li in r.items
    ]
    insert_tuples(conn, it, ITEM_COLUMNS, item_rows)
    return out
