"""Write a synthetic shop as the batch files cdp ingests.

`generate_shop` draws the customer population once (numpy columns, about 70 bytes a customer),
then renders it in chunks of customers (see `chunks`): each chunk's customer rows, orders,
consent rows and events are appended to their files before later chunks are taken, so memory
does not grow with the number of orders. Chunks are rendered in worker processes when more than
one CPU is available (see `parallel`); each has its own random stream derived from the seed,
so a fixed seed gives byte-identical files whatever the number of workers (for a given Faker
and numpy version).

Files, all UTF-8 with ``\\n`` line ends:

* ``customers.csv`` — see `CUSTOMER_HEADER`;
* ``orders.jsonl`` — one order per line, grouped by customer, each customer's in time order;
* ``consents.csv`` — see `CONSENT_HEADER`, by customer and then time;
* ``events.jsonl`` — Segment-style track events, by customer and then time.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import BinaryIO

from cdp.demo.catalog import Catalog
from cdp.demo.chunks import Shop, rng
from cdp.demo.contact import EmailBook
from cdp.demo.customers import CUSTOMER_HEADER
from cdp.demo.events import EventTemplates
from cdp.demo.parallel import render_here, render_parallel
from cdp.demo.people import build_pools
from cdp.demo.population import build_population
from cdp.demo.timeline import Timeline

DEFAULT_END = date(2026, 10, 31)
"""Fixed default end of the generated period, so that output does not depend on today."""
PERIOD_DAYS = 730
MAX_WORKERS = 4
CONSENT_HEADER = (
    "customer_id", "purpose", "status", "occurred_at", "source", "notice_version", "mechanism",
)  # fmt: skip

_STREAM_POPULATION, _STREAM_CATALOG = 0, 1  # chunks use `chunks.STREAM_CHUNKS`


@dataclass(frozen=True, slots=True)
class ShopFiles:
    """The files written by `generate_shop` and how many records each holds."""

    customers: Path
    orders: Path
    consents: Path
    events: Path
    customer_count: int
    order_count: int
    consent_count: int
    event_count: int


SHOP_FILES: tuple[str, ...] = ("customers.csv", "orders.jsonl", "consents.csv", "events.jsonl")
"""The files of a shop, in the order :func:`generate_shop` writes them."""


def generate_shop(
    out_dir: Path,
    *,
    customers: int,
    orders: int,
    seed: int = 7,
    start: date | None = None,
    end: date | None = None,
    events: int | None = None,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> ShopFiles:
    """Write customers, orders, consents and events of a synthetic shop into `out_dir`.

    `customers` and `orders` are exact counts; `events` defaults to twice the orders.
    Customers sign up between `start` and `end` (both inclusive, UTC; by default the two
    years ending on `DEFAULT_END`) and every timestamp lies in that period. `progress`, if
    given, is called after each chunk with the number of orders written so far. `workers`
    is the number of rendering processes (default: the available CPUs, at most
    `MAX_WORKERS`, or 1 when called from a multi-threaded process; 1 renders in this
    process). Output does not depend on it.
    """
    if customers < 1:
        raise ValueError("customers must be at least 1")
    if orders < 0:
        raise ValueError("orders must not be negative")
    n_events = 2 * orders if events is None else events
    if n_events < 0:
        raise ValueError("events must not be negative")
    last_day = end or DEFAULT_END
    first_day = start or last_day - timedelta(days=PERIOD_DAYS - 1)
    shop = _plan(seed, Timeline(first_day, last_day), customers, orders, n_events)

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = tuple(out_dir / name for name in SHOP_FILES)
    written_orders = 0
    consent_rows = 0
    with _new_files(paths) as files:
        files[0].write((",".join(CUSTOMER_HEADER) + "\n").encode("ascii"))
        files[2].write((",".join(CONSENT_HEADER) + "\n").encode("ascii"))
        for order_count, consent_count in _write_chunks(shop, files, workers):
            written_orders += order_count
            consent_rows += consent_count
            if progress is not None:
                progress(written_orders)
    if written_orders != orders:  # pragma: no cover - the population guarantees the total
        raise RuntimeError(f"wrote {written_orders} orders instead of {orders}")
    return ShopFiles(
        customers=paths[0],
        orders=paths[1],
        consents=paths[2],
        events=paths[3],
        customer_count=customers,
        order_count=written_orders,
        consent_count=consent_rows,
        event_count=n_events,
    )


@contextlib.contextmanager
def _new_files(paths: Sequence[Path]) -> Iterator[tuple[BinaryIO, ...]]:
    """Handles on new temporary files beside ``paths`` (created exclusively, never through a
    link), renamed over them when the block ends without an error, removed otherwise: a link
    planted where a file is expected is replaced, not written through."""
    temps: list[Path] = []
    try:
        with contextlib.ExitStack() as stack:
            handles = []
            for path in paths:
                fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
                temps.append(Path(name))
                handles.append(stack.enter_context(os.fdopen(fd, "wb")))
            yield tuple(handles)
        for temp, path in zip(temps, paths, strict=True):
            temp.replace(path)
        temps.clear()
    finally:
        for temp in temps:
            with contextlib.suppress(OSError):
                temp.unlink()


def _plan(seed: int, timeline: Timeline, customers: int, orders: int, events: int) -> Shop:
    """Draw everything that is shared by all chunks."""
    population = build_population(
        rng(seed, _STREAM_POPULATION), timeline, customers, orders, events
    )
    catalog = Catalog(rng(seed, _STREAM_CATALOG))
    pools = build_pools(seed)
    return Shop(
        seed=seed,
        timeline=timeline,
        catalog=catalog,
        templates=EventTemplates(catalog, timeline),
        pools=pools,
        book=EmailBook(customers, seed, pools),
        population=population,
        customer_width=max(6, len(str(customers))),
        order_width=max(7, len(str(orders))),
        salt=(seed * 0x9E3779B97F4A7C15) % 2**64,
    )


def _worker_count(requested: int | None, chunks: int) -> int:
    if requested is not None:
        if requested < 1:
            raise ValueError("workers must be at least 1")
        return min(requested, chunks)
    # Forking is only safe from a single-threaded process (a thread could hold a lock).
    if "fork" not in multiprocessing.get_all_start_methods() or threading.active_count() > 1:
        return 1
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    return max(1, min(available, MAX_WORKERS, chunks))


def _write_chunks(
    shop: Shop, files: tuple[BinaryIO, ...], workers: int | None
) -> Iterator[tuple[int, int]]:
    """Append every chunk to `files`, yielding (orders, consent rows) per chunk in order."""
    count = _worker_count(workers, shop.chunks)
    if count <= 1:
        for chunk in render_here(shop):
            for out, data in zip(
                files, (chunk.customers, chunk.orders, chunk.consents, chunk.events), strict=True
            ):
                out.write(data)
            yield chunk.order_count, chunk.consent_count
        return
    for out in files:
        out.flush()
    yield from render_parallel(shop, [out.fileno() for out in files], count)


__all__ = ["CONSENT_HEADER", "CUSTOMER_HEADER", "DEFAULT_END", "ShopFiles", "generate_shop"]
