"""One chunk of customers at a time: their customer rows, orders, consents and events.

A `Shop` holds everything drawn once for the whole run (calendar, catalog, name pools, the
population). `render_chunk` turns chunk `k` of it into the bytes of the four files. A chunk's
output depends only on the shop and its own random stream, so chunks can be rendered in any
order, or in parallel, and still give identical files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from cdp.demo import fastfmt as ff
from cdp.demo.catalog import Catalog
from cdp.demo.chunkids import ChunkIds
from cdp.demo.consents import make_consents
from cdp.demo.contact import EmailBook
from cdp.demo.customers import make_customers
from cdp.demo.events import EventTemplates, make_events
from cdp.demo.orders import make_orders
from cdp.demo.people import MarketPools
from cdp.demo.population import Population
from cdp.demo.timeline import Timeline

TARGET_ORDERS_PER_CHUNK = 25_000
"""Chunks are sized to hold about this many orders, so memory does not depend on the mix."""
MIN_CHUNK_CUSTOMERS = 500
MAX_CHUNK_CUSTOMERS = 20_000

STREAM_CHUNKS = 2
"""Random stream family of the chunks (see `rng`)."""


def rng(seed: int, *stream: int) -> np.random.Generator:
    """An independent random stream for one part of the generation."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=stream))


@dataclass(frozen=True, slots=True)
class RenderedChunk:
    """The bytes a chunk adds to each file, and its record counts."""

    customers: bytes
    orders: bytes
    consents: bytes
    events: bytes
    order_count: int
    consent_count: int


@dataclass(frozen=True)
class Shop:
    """Everything drawn once per run that chunks are rendered from."""

    seed: int
    timeline: Timeline
    catalog: Catalog
    templates: EventTemplates
    pools: tuple[MarketPools, ...]
    book: EmailBook
    population: Population
    customer_width: int
    order_width: int
    salt: int
    bounds: NDArray[np.int64] = field(init=False)
    """Customer index where each chunk starts (and, last, the number of customers)."""
    first_orders: NDArray[np.int64] = field(init=False)
    """Number of the first order of each chunk."""

    def __post_init__(self) -> None:
        pop = self.population
        per_customer = np.where(pop.first_order >= 0, 1 + pop.repeats.astype(np.int64), 0)
        average = max(float(per_customer.mean()), 0.1)
        size = int(
            min(MAX_CHUNK_CUSTOMERS, max(MIN_CHUNK_CUSTOMERS, TARGET_ORDERS_PER_CHUNK / average))
        )
        bounds = np.append(np.arange(0, pop.size, size), pop.size).astype(np.int64)
        cumulative = np.concatenate(([0], np.cumsum(per_customer)))
        object.__setattr__(self, "bounds", bounds)
        object.__setattr__(self, "first_orders", cumulative[bounds[:-1]] + 1)

    @property
    def chunks(self) -> int:
        """Number of chunks."""
        return len(self.bounds) - 1


class Renderer:
    """Renders chunks of one shop, reusing its byte buffers from chunk to chunk."""

    def __init__(self, shop: Shop) -> None:
        self.shop = shop
        self._canvases = (ff.Canvas(), ff.Canvas(), ff.Canvas())

    def render(self, k: int) -> RenderedChunk:
        """The output of chunk `k`."""
        shop = self.shop
        lo, hi = int(shop.bounds[k]), int(shop.bounds[k + 1])
        stream = rng(shop.seed, STREAM_CHUNKS, k)
        part = shop.population.slice(lo, hi)
        numbers = np.arange(lo + 1, hi + 1, dtype=np.int64)
        plain = ChunkIds.build(numbers, shop.customer_width, shop.salt).ids
        customers, emails = make_customers(
            stream, shop.pools, shop.book, shop.population, lo, hi, plain
        )
        ids = ChunkIds.build(numbers, shop.customer_width, shop.salt, emails)
        order_canvas, consent_canvas, event_canvas = self._canvases
        orders = make_orders(
            order_canvas, stream, shop.timeline, shop.catalog, part,
            first_number=int(shop.first_orders[k]), ids=ids, id_width=shop.order_width,
        )  # fmt: skip
        consents = make_consents(consent_canvas, stream, shop.timeline, part, ids)
        events = make_events(
            event_canvas, stream, shop.timeline, shop.catalog, shop.templates, part, orders,
            consents, ids, shop.order_width,
        )  # fmt: skip
        return RenderedChunk(
            customers=customers,
            orders=orders.data,
            consents=consents.data,
            events=events,
            order_count=orders.count,
            consent_count=consents.rows,
        )
