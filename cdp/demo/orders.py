"""Orders of a chunk of customers: timing, baskets, coupons, statuses and JSON lines.

Each buyer's first order comes from the population; repeats fall uniformly on the buyer's
operational clock between the first order and the end of their window (the last one exactly at
the dropout point for customers who lapsed), which turns into seasonal calendar time. Baskets
reflect the buyer's favourite category and price taste. Coupons follow campaign rules:

* ``NEW10`` — 10% off a first order;
* ``618SALE`` / ``1111SALE`` — 30 yuan off every 300 (1-18 June), 50 off every 400 (1-11 Nov),
  China only;
* ``WELCOMEBACK`` — a fixed amount off the first order after 90 days or more of silence;
* ``VIP15`` — 15% off for customers on their sixth order or later.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from cdp.demo import fastfmt as ff
from cdp.demo.catalog import Catalog
from cdp.demo.chunkids import ChunkIds
from cdp.demo.locales import CN, CURRENCIES, CURRENCY_OF_MARKET, MARKETS, MINOR_DIGITS
from cdp.demo.population import Population
from cdp.demo.timeline import DAY, HOUR, Timeline

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]

COUPONS = ("", "NEW10", "WELCOMEBACK", "VIP15", "618SALE", "1111SALE")
STATUSES = ("completed", "refunded", "cancelled")
REFUND_RATE = 0.04
CANCEL_RATE = 0.02
GUEST_RATE = 0.02

_CURRENCY_OF_MARKET = np.array(CURRENCY_OF_MARKET, dtype=np.int64)
_OFFSET_OF_MARKET = np.array([m.utc_offset_hours for m in MARKETS], dtype=np.int64)
_WELCOME_BACK = np.array([2000, 500, 500, 500, 700], dtype=np.int64)  # per currency, minor units
_DECIMALS = np.array(MINOR_DIGITS, dtype=np.int64)
_CURRENCY_ROWS = ff.table(CURRENCIES)
_COUPON_ROWS = ff.table(["null"] + [f'"{c}"' for c in COUPONS[1:]])
_STATUS_ROWS = ff.table(STATUSES)


@dataclass(frozen=True, slots=True)
class ChunkOrders:
    """What later steps (events) need to know about a chunk's orders."""

    owner: I64
    """Customer index within the chunk, per order (orders are grouped by customer)."""
    number: I64
    """Global order number (order id without prefix and padding)."""
    at: I64
    total: I64
    currency: I64
    status: I64
    first_sku: I64
    data: bytes
    """The rendered JSON lines."""

    @property
    def count(self) -> int:
        """Number of orders in the chunk."""
        return len(self.owner)


def make_orders(
    canvas: ff.Canvas,
    rng: np.random.Generator,
    timeline: Timeline,
    catalog: Catalog,
    pop: Population,
    *,
    first_number: int,
    ids: ChunkIds,
    id_width: int,
) -> ChunkOrders:
    """Generate and render the orders of the customers in `pop` (a chunk)."""
    buys = pop.first_order >= 0
    per_customer = np.where(buys, 1 + pop.repeats.astype(np.int64), 0)
    owner = np.repeat(np.arange(pop.size), per_customer)
    total_orders = len(owner)
    starts = np.cumsum(per_customer) - per_customer
    seq = np.arange(total_orders) - starts[owner]
    at = _order_times(rng, timeline, pop, owner, seq)
    market = pop.market[owner].astype(np.int64)
    currency = _CURRENCY_OF_MARKET[market]

    n_items = 1 + rng.poisson(pop.basket[owner].astype(np.float64))
    item_order = np.repeat(np.arange(total_orders), n_items)
    item_start = np.cumsum(n_items) - n_items
    product, sku = catalog.choose(
        rng,
        pop.favourite[owner][item_order].astype(np.int64),
        pop.taste[owner][item_order].astype(np.float64),
    )
    quantity = 1 + (rng.random(len(sku)) < 0.14) + (rng.random(len(sku)) < 0.04)
    item_currency = currency[item_order]
    line_amount = catalog.price[product, item_currency] * quantity
    subtotal = np.add.reduceat(line_amount, item_start) if total_orders else line_amount

    gap = np.where(seq > 0, at - np.concatenate(([0], at[:-1])), 0)
    coupon, discount = _coupons(rng, at, market, currency, seq, gap, subtotal)
    total = subtotal - discount
    status = np.zeros(total_orders, dtype=np.int64)
    u = rng.random(total_orders)
    status[u < REFUND_RATE + CANCEL_RATE] = 2
    status[u < REFUND_RATE] = 1
    guest = rng.random(total_orders) < GUEST_RATE

    number = first_number + np.arange(total_orders)
    last_item = np.zeros(len(sku), dtype=np.int64)
    if len(sku):
        last_item[np.cumsum(n_items) - 1] = 1
    data = _render(
        canvas, catalog, ids, id_width,
        {"number": number, "owner": owner, "guest": guest.astype(np.int64), "at": at,
         "total": total, "currency": currency, "discount": discount, "coupon": coupon,
         "status": status},
        {"order": item_order, "currency": item_currency, "sku": sku,
         "quantity": quantity.astype(np.int64), "last": last_item},
    )  # fmt: skip
    return ChunkOrders(owner, number, at, total, currency, status, sku[item_start], data)


def _order_times(
    rng: np.random.Generator, timeline: Timeline, pop: Population, owner: I64, seq: I64
) -> I64:
    """Epoch seconds of every order; within a customer in increasing order."""
    at = pop.first_order[owner].copy()
    repeat = seq > 0
    r_owner = owner[repeat]
    u = rng.random(len(r_owner))
    # For a customer who dropped out, the last repeat is the dropout point itself.
    is_last = np.zeros(len(r_owner), dtype=bool)
    if len(r_owner):
        is_last[np.r_[r_owner[1:] != r_owner[:-1], True]] = True
    u[is_last & pop.stopped[r_owner]] = 1.0
    u = u[np.lexsort((u, r_owner))]
    lo = pop.clock_first[r_owner]
    clock = lo + u * (pop.clock_stop[r_owner] - lo)
    seconds = np.empty(len(r_owner))
    r_market = pop.market[r_owner]
    for m in range(len(MARKETS)):
        mask = r_market == m
        seconds[mask] = timeline.from_clock(m, clock[mask])
    first = pop.first_order[r_owner]
    at[repeat] = np.clip(seconds.astype(np.int64), first + 60, timeline.end - 1)
    return at


def _local_month_day(at: I64, market: I64) -> tuple[I64, I64]:
    local = (at + _OFFSET_OF_MARKET[market] * HOUR).astype("datetime64[s]")
    days = local.astype("datetime64[D]")
    months = local.astype("datetime64[M]")
    month = months.astype(np.int64) % 12 + 1
    day = (days - months.astype("datetime64[D]")).astype(np.int64) + 1
    return month, day


def _coupons(
    rng: np.random.Generator,
    at: I64,
    market: I64,
    currency: I64,
    seq: I64,
    gap: I64,
    subtotal: I64,
) -> tuple[I64, I64]:
    """Coupon code index and discount (minor units) of every order; one coupon at most."""
    n = len(at)
    coupon = np.zeros(n, dtype=np.int64)
    discount = np.zeros(n, dtype=np.int64)
    u = rng.random(n)
    month, day = _local_month_day(at, market)
    china = market == CN

    def apply(mask: NDArray[np.bool_], code: int, amount: I64) -> None:
        coupon[mask] = code
        discount[mask] = amount[mask]

    apply((seq >= 5) & (u < 0.12), 3, (subtotal * 15 + 50) // 100)
    welcome = np.minimum(_WELCOME_BACK[currency], subtotal // 3)
    apply((seq > 0) & (gap >= 90 * DAY) & (u < 0.5) & (subtotal >= 3 * _WELCOME_BACK[currency]),
          2, welcome)  # fmt: skip
    apply(china & (month == 6) & (day <= 18) & (subtotal >= 30000) & (u < 0.6),
          4, subtotal // 30000 * 3000)  # fmt: skip
    apply(china & (month == 11) & (day <= 11) & (subtotal >= 40000) & (u < 0.65),
          5, subtotal // 40000 * 5000)  # fmt: skip
    apply((seq == 0) & (u < 0.35), 1, (subtotal * 10 + 50) // 100)
    return coupon, discount


def _render(
    canvas: ff.Canvas,
    catalog: Catalog,
    ids: ChunkIds,
    id_width: int,
    order: dict[str, I64],
    item: dict[str, I64],
) -> bytes:
    """One JSON line per order, keys in the documented order, as bytes."""
    n = len(order["number"])
    if n == 0:
        return b""
    decimals = _DECIMALS[order["currency"]]
    head: list[ff.Block] = [
        '{"order_id": "O', ff.digits(order["number"], id_width), '", ',
        (ids.who, order["owner"] + len(ids.ids) * order["guest"]),
        ', "ordered_at": "', ff.timestamps(order["at"]),
        '", "total": "', ff.amounts(order["total"], decimals),
        '", "currency": "', (_CURRENCY_ROWS, order["currency"]),
        '", "discount": "', ff.amounts(order["discount"], decimals),
        '", "coupon": ', (_COUPON_ROWS, order["coupon"]),
        ', "status": "', (_STATUS_ROWS, order["status"]),
        '", "items": [',
    ]  # fmt: skip
    items = (
        catalog.item_rows,
        catalog.item_index(item["currency"], item["sku"], item["quantity"], item["last"] > 0),
    )
    # Each order's head row is followed by its item rows (the last one closes the line).
    m = len(item["order"])
    n_items = np.bincount(item["order"], minlength=n)
    head_at = np.arange(n) + np.cumsum(n_items) - n_items
    is_item = np.ones(n + m, dtype=bool)
    is_item[head_at] = False
    heads = ff.join(head, n)
    view = canvas.matrix(n + m, max(heads.shape[1], items[0].shape[1]))
    view[head_at, : heads.shape[1]] = heads
    view[head_at, heads.shape[1] :] = ff.FILL
    ff.fill(view, [items], rows=np.flatnonzero(is_item))
    return ff.to_bytes(view)
