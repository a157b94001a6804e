"""Orders: idempotent by the shop's order id; line items written with their order.

An order id already stored is a duplicate unless a row is news about it (below): then the order
row's status, total, discount, coupon and ``source_updated_at`` are updated and counted as
``updated``. Its line items are not rewritten. Only new orders go through identity resolution (an
order for an unknown customer creates a subject holding just that identity).

A new order older than the support window when it arrives
(:func:`cdp.privacy.registry.longest_retention`: 1095 days) is stored without its personal link
(``subject_id`` null, line items kept) and counted ``expired``, not ``inserted``: retention would
cut that link at its next run for everyone (``support`` rests on contract), so the order is stored
as retention leaves it — an anonymous sale for the accounts — and its identities are not resolved
(no subject is created or linked for it, whoever it names, an erased person included).

Which of several rows of one order holds (:func:`_precedence`, the same rule within a batch and
against what is stored):

- the status only moves forward: ``completed`` → ``cancelled`` → ``refunded``
  (:data:`STATUS_RANK`); a row that would move a stored order back (an older export loaded
  after a refund) is a duplicate;
- among rows of the same status, a row carrying a strictly later ``updated_at`` (the shop's last
  change of the order) than the stored one wins — a second partial refund, a corrected total;
  a row without ``updated_at``, or not later, does not replace what is stored (it is of
  unknown age, or older news);
- among rows of equal precedence, the first one stored stands (within a file, the first row).

So the outcome does not depend on how a file is cut into batches, a second run of the same files
changes nothing (every row is a duplicate), and an old export loaded again never undoes a later
one that carries ``updated_at``. An order's currency never changes: a row giving a stored order
another currency is rejected (``currency_changed``); its amounts and line items are in the stored
currency's minor units.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from operator import itemgetter
from typing import Any

import sqlalchemy as sa

from cdp.db.types import UtcDateTime
from cdp.ingest.batch import BatchContext, Outcome, Reject, claim_of, existing, refusal
from cdp.ingest.bulk import insert_tuples
from cdp.ingest.money import to_minor
from cdp.ingest.records import OrderRecord
from cdp.privacy.registry import longest_retention
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
    "source_updated_at",
    "created_at",
    "updated_at",
)
ITEM_COLUMNS = ("order_id", "product_id", "sku", "category", "name", "price_minor", "quantity")
STATUS_RANK = {"completed": 0, "cancelled": 1, "refunded": 2}
"""How far along an order's status is: an update never moves it back."""

Precedence = tuple[int, bool, datetime]
_UNDATED = datetime.min.replace(tzinfo=UTC)


def _precedence(status: str, updated_at: datetime | None) -> Precedence:
    """How much a row of an order says: its status's rank, then its ``updated_at`` (a row
    without one ranks below every dated row of the same status). A row replaces what is held
    only when its precedence is strictly greater."""
    if updated_at is None:
        return STATUS_RANK[status], False, _UNDATED
    return STATUS_RANK[status], True, updated_at


_UTC_TIME = UtcDateTime()


def _stored_time(value: Any) -> datetime | None:
    """``orders.source_updated_at`` as the driver returns it (SQLite: naive UTC text), read as
    the column's type reads it."""
    moment: datetime | None = _UTC_TIME.process_result_value(value, None)  # type: ignore[arg-type]
    return moment


def _folded(items: Sequence[tuple[int, OrderRecord]]) -> tuple[list[tuple[int, OrderRecord]], int]:
    """One row per order id: the one of greatest precedence (the first among equals, as the row
    stored first stands against later ones), at the position of the order's first row; and how
    many rows were folded away."""
    chosen: dict[str, tuple[int, OrderRecord, Precedence]] = {}
    for position, r in items:
        held = chosen.get(r.order_id)
        rank = _precedence(r.status, r.updated_at)
        if held is None:
            chosen[r.order_id] = (position, r, rank)
        elif rank > held[2]:
            chosen[r.order_id] = (held[0], r, rank)
    return [(p, r) for p, r, _ in chosen.values()], len(items) - len(chosen)


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
    ctx: BatchContext, r: OrderRecord, subject_id: str | None, minor: _Minor
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
        r.updated_at,
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
        ot.c.source_updated_at,
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
        if _precedence(r.status, r.updated_at) <= _precedence(row[1], _stored_time(row[6])):
            out.duplicates += 1  # the same, older news, or news of unknown age
            continue
        out.updated += 1
        total = to_minor(r.total, r.currency)
        updates[r.order_id] = {
            "ref": r.order_id,
            "st": r.status,
            "tm": total,
            "dm": to_minor(r.discount, r.currency),
            "cp": r.coupon,
            "vb": ctx.converter.value_base(total, r.currency),
            "su": r.updated_at,
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
                source_updated_at=sa.bindparam("su"),
                updated_at=ctx.now,
            ),
            list(updates.values()),
        )
    if not fresh:
        return out
    window = longest_retention("orders")
    oldest = None if window is None else ctx.now - window
    expired = [r for _, r in fresh if oldest is not None and r.ordered_at < oldest]
    fresh = [(p, r) for p, r in fresh if oldest is None or r.ordered_at >= oldest]
    rows = []
    kept: list[OrderRecord] = []
    minor = _Minor()
    if fresh:
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
                keyless=ctx.keyless,
            )
        )
        for i, (position, r) in enumerate(fresh):
            sid = res.subjects[i]
            if sid is None:
                out.rejects.append(refusal(position, res.refused[i]))
                continue
            rows.append(_order_row(ctx, r, sid, minor))
            kept.append(r)
        out.inserted += len(rows)
    for r in expired:  # past the support window: an anonymous sale, as retention leaves it
        rows.append(_order_row(ctx, r, None, minor))
        kept.append(r)
    out.expired += len(expired)
    if not rows:
        return out
    rows.sort(key=itemgetter(0))  # order_ref: the unique index's order (see insert_rows)
    insert_tuples(conn, ot, ORDER_COLUMNS, rows)
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
