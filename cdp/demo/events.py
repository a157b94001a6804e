"""Behaviour events of a chunk of customers, in the Segment track shape.

About half of a buyer's events lead up to one of their orders (viewing the product a few minutes
before, adding it to the cart, starting checkout) or follow it (a review). The rest are browsing,
daily check-ins of loyalty members, and opens and clicks of marketing email - only while the
customer's email-marketing consent is in force. Customers who lapse stop browsing a couple of
months after their last purchase. Some product views happen before signing up and carry only an
``anonymous_id``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from cdp.demo import fastfmt as ff
from cdp.demo.catalog import Catalog
from cdp.demo.chunkids import ChunkIds
from cdp.demo.consents import ChunkConsents
from cdp.demo.locales import CURRENCIES, CURRENCY_OF_MARKET, MARKETS, MINOR_DIGITS
from cdp.demo.orders import ChunkOrders
from cdp.demo.population import Population
from cdp.demo.timeline import DAY, Timeline

I64 = NDArray[np.int64]

EVENTS = (
    "Product Viewed", "Product Added", "Checkout Started", "Checked In", "Product Reviewed",
    "Email Opened", "Email Clicked",
)  # fmt: skip
VIEWED, ADDED, CHECKOUT, CHECKED_IN, REVIEWED, OPENED, CLICKED = range(7)
ANCHORED_SHARE = 0.55
ANONYMOUS_SHARE = 0.15
_RATINGS = np.array([0.06, 0.04, 0.10, 0.25, 0.55])
_CURRENCY_OF_MARKET = np.array(CURRENCY_OF_MARKET, dtype=np.int64)
MAX_STREAK = 30
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_UUID_HEX_COLUMNS = np.array([c for c in range(36) if c not in (8, 13, 18, 23)])
_DECIMALS = np.array(MINOR_DIGITS, dtype=np.int64)
_CURRENCY_ROWS = ff.table(CURRENCIES)
_BEFORE_ORDER = {VIEWED: (300.0, 3600.0), ADDED: (60.0, 1200.0), CHECKOUT: (20.0, 180.0)}


def make_events(
    canvas: ff.Canvas,
    rng: np.random.Generator,
    timeline: Timeline,
    catalog: Catalog,
    templates: EventTemplates,
    pop: Population,
    orders: ChunkOrders,
    consents: ChunkConsents,
    ids: ChunkIds,
    order_width: int,
) -> bytes:
    """Generate and render the events of the customers in `pop` (a chunk), by customer and time."""
    n = pop.size
    owner = np.repeat(np.arange(n), pop.events.astype(np.int64))
    total = len(owner)
    order_count = np.bincount(orders.owner, minlength=n)
    order_start = np.cumsum(order_count) - order_count

    anchored = (order_count[owner] > 0) & (rng.random(total) < ANCHORED_SHARE)
    pick = order_start[owner] + (rng.random(total) * order_count[owner]).astype(np.int64)
    order = np.where(anchored, pick, -1)
    kind = _kinds(rng, pop, consents, owner, anchored, orders, order)
    at = _times(rng, timeline, pop, consents, owner, anchored, kind, orders, order)
    anonymous = (kind == VIEWED) & ~anchored & (rng.random(total) < ANONYMOUS_SHARE)
    before = rng.exponential(2.0 * DAY, total).astype(np.int64) + 60
    at = np.where(anonymous, np.maximum(pop.signup[owner] - before, timeline.start), at)

    _, sku = catalog.choose(
        rng, pop.favourite[owner].astype(np.int64), pop.taste[owner].astype(np.float64)
    )
    sku = np.where(anchored, orders.first_sku[np.maximum(order, 0)], sku)
    currency = _CURRENCY_OF_MARKET[pop.market[owner]]
    rating = 1 + np.searchsorted(np.cumsum(_RATINGS), rng.random(total) * 0.999999)
    streak = 1 + rng.geometric(0.35, total)

    product = np.asarray(catalog.sku_product, dtype=np.int64)[sku]
    sort = np.lexsort((at, owner))
    columns = {
        "owner": owner, "at": at, "kind": kind, "order": order, "sku": sku, "product": product,
        "currency": currency, "rating": rating, "streak": streak,
    }  # fmt: skip
    columns = {name: values[sort] for name, values in columns.items()}
    return _render(
        canvas, templates, orders, ids, anonymous[sort], columns, order_width,
        rng.bytes(16 * total),
    )  # fmt: skip


def _kinds(
    rng: np.random.Generator,
    pop: Population,
    consents: ChunkConsents,
    owner: I64,
    anchored: NDArray[np.bool_],
    orders: ChunkOrders,
    order: I64,
) -> I64:
    total = len(owner)
    u = rng.random(total)
    funnel = np.select([u < 0.42, u < 0.70, u < 0.90], [VIEWED, ADDED, CHECKOUT], REVIEWED)
    completed = orders.status[np.maximum(order, 0)] == 0 if orders.count else np.ones(total, bool)
    funnel = np.where((funnel == REVIEWED) & ~completed, VIEWED, funnel)
    v = rng.random(total)
    free = np.select(
        [v < 0.45, v < 0.55, v < 0.70, v < 0.88], [VIEWED, ADDED, CHECKED_IN, OPENED], CLICKED
    )
    free = np.where((free == CHECKED_IN) & ~pop.loyalty[owner], VIEWED, free)
    has_email = consents.email_from[owner] >= 0
    free = np.where(((free == OPENED) | (free == CLICKED)) & ~has_email, VIEWED, free)
    result: I64 = np.where(anchored, funnel, free).astype(np.int64)
    return result


def _times(
    rng: np.random.Generator,
    timeline: Timeline,
    pop: Population,
    consents: ChunkConsents,
    owner: I64,
    anchored: NDArray[np.bool_],
    kind: I64,
    orders: ChunkOrders,
    order: I64,
) -> I64:
    """Event seconds: around the anchoring order, inside the consent window, or while active."""
    total = len(owner)
    end = timeline.end
    order_at = orders.at[np.maximum(order, 0)] if orders.count else np.zeros(total, np.int64)
    lead = np.zeros(total)
    for k, (low, high) in _BEFORE_ORDER.items():
        mask = kind == k
        lead[mask] = rng.uniform(low, high, int(mask.sum()))
    review_room = np.minimum(14 * DAY, end - 1 - order_at)
    review = order_at + 1 + (rng.random(total) * np.maximum(review_room, 0)).astype(np.int64)
    funnel = np.where(kind == REVIEWED, review, order_at - lead.astype(np.int64))

    # Free browsing between sign-up and the end of the customer's active life.
    active_until = np.full(pop.size, end, dtype=np.int64)
    buyers = pop.first_order >= 0
    for m in range(len(MARKETS)):
        mask = (pop.market == m) & pop.stopped
        stop = timeline.from_clock(m, pop.clock_stop[mask]).astype(np.int64)
        active_until[mask] = np.minimum(stop + 60 * DAY, end)
    active_until[~buyers] = np.minimum(pop.signup[~buyers] + 90 * DAY, end)
    lo = pop.signup[owner]
    span = np.maximum(active_until[owner] - lo, 1)
    browse = lo + (rng.random(total) * span).astype(np.int64)
    email_lo = np.maximum(consents.email_from[owner], 0)
    email_span = np.maximum(consents.email_until[owner] - email_lo, 1)
    mail = email_lo + (rng.random(total) * email_span).astype(np.int64)
    free = np.where((kind == OPENED) | (kind == CLICKED), mail, browse)
    at = np.where(anchored, funnel, free)
    # A customer's events start at sign-up; earlier browsing is anonymous (set by the caller).
    result: I64 = np.clip(at, pop.signup[owner], end - 1)
    return result


class EventTemplates:
    """Pre-rendered ``"event": ..., "properties": {...}`` members that do not depend on orders."""

    def __init__(self, catalog: Catalog, timeline: Timeline) -> None:
        props = catalog.product_props
        viewed = [f'"event": "Product Viewed", "properties": {p}}}' for c in props for p in c]
        added = [
            f'"event": "Product Added", "properties": {p}, "quantity": 1}}'
            for c in props
            for p in c
        ]
        checked_in = [
            f'"event": "Checked In", "properties": {{"points": 5, "streak_days": {k}}}'
            for k in range(1, MAX_STREAK + 1)
        ]
        reviewed = [
            f'"event": "Product Reviewed", "properties": {{"product_id": "{pid}", "rating": {r}}}'
            for pid in catalog.product_ids
            for r in range(1, 6)
        ]
        first = timeline.start_day.year * 12 + timeline.start_day.month - 1
        last = timeline.end_day.year * 12 + timeline.end_day.month - 1
        self.first_month = first
        months = [f"{m // 12}-{m % 12 + 1:02d}" for m in range(first, last + 1)]
        mail = [
            f'"event": "{name}", "properties": {{"campaign_id": "newsletter-{month}"}}'
            for name in ("Email Opened", "Email Clicked")
            for month in months
        ]
        self.skus = len(catalog.skus)
        self.base = np.cumsum([0, len(viewed), len(added), len(checked_in), len(reviewed)])
        self.months = len(months)
        self.rows = ff.table(viewed + added + checked_in + reviewed + mail)

    def index(self, kind: I64, currency: I64, sku: I64, product: I64, rating: I64,
              streak: I64, month: I64) -> I64:  # fmt: skip
        """Row of `rows` for each event (checkout events get a placeholder)."""
        viewed_at = currency * self.skus + sku
        mail_base = self.base[4]
        index: I64 = np.select(
            [kind == VIEWED, kind == ADDED, kind == CHECKED_IN, kind == REVIEWED,
             kind == OPENED, kind == CLICKED],
            [viewed_at, self.base[1] + viewed_at, self.base[2] + np.minimum(streak, MAX_STREAK) - 1,
             self.base[3] + product * 5 + rating - 1, mail_base + month,
             mail_base + self.months + month],
            0,
        )  # fmt: skip
        return index


def _checkout_rows(orders: ChunkOrders, order_width: int) -> ff.U8:
    decimals = _DECIMALS[orders.currency]
    blocks: list[ff.Block] = [
        '"event": "Checkout Started", "properties": {"order_id": "O',
        ff.digits(orders.number, order_width),
        '", "value": "', ff.amounts(orders.total, decimals),
        '", "currency": "', (_CURRENCY_ROWS, orders.currency), '"}',
    ]  # fmt: skip
    return ff.join(blocks, orders.count)


def _message_ids(raw: bytes) -> ff.U8:
    """Random bytes -> version 4 UUIDs (36 columns)."""
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 16)
    nibbles = np.empty((len(b), 32), dtype=np.uint8)
    nibbles[:, 0::2] = b >> 4
    nibbles[:, 1::2] = b & 15
    nibbles[:, 12] = 4
    nibbles[:, 16] = 8 + (nibbles[:, 16] & 3)
    out = np.full((len(b), 36), ord("-"), dtype=np.uint8)
    out[:, _UUID_HEX_COLUMNS] = _HEX[nibbles]
    return out


def _render(
    canvas: ff.Canvas,
    templates: EventTemplates,
    orders: ChunkOrders,
    ids: ChunkIds,
    anonymous: NDArray[np.bool_],
    columns: dict[str, I64],
    order_width: int,
    raw_ids: bytes,
) -> bytes:
    """One JSON line per event, as bytes."""
    n = len(anonymous)
    if n == 0:
        return b""
    kind, at = columns["kind"], columns["at"]
    year, month, _ = ff.civil(np.floor_divide(at, DAY))
    month_index = year * 12 + month - 1 - templates.first_month
    index = templates.index(
        kind, columns["currency"], columns["sku"], columns["product"], columns["rating"],
        columns["streak"], month_index,
    )  # fmt: skip
    body = templates.rows
    if orders.count:
        body = ff.stack([body, _checkout_rows(orders, order_width)])
        index = np.where(kind == CHECKOUT, len(templates.rows) + columns["order"], index)
    who = columns["owner"] + len(ids.ids) * anonymous
    blocks: list[ff.Block] = [
        '{"message_id": "', _message_ids(raw_ids), '", ', (ids.actor, who), ", ", (body, index),
        ', "timestamp": "', ff.timestamps(at), '"}\n',
    ]  # fmt: skip
    return canvas.render(n, blocks)
