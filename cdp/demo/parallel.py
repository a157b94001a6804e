"""Rendering chunks in forked worker processes that append to the files in chunk order.

Shipping each chunk's bytes back to the parent would cost as much as rendering them, so workers
write themselves: each renders its chunk, waits for its turn (all earlier chunks written), writes
its bytes at the files' current ends with ``pwrite`` and passes the turn on. The parent only
collects record counts. Chunks are handed out in order and a worker waits only for earlier
chunks, which other workers are busy rendering, so the turn always moves on; if a worker fails,
it raises a shared flag that releases everyone waiting.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized, SynchronizedArray
from multiprocessing.synchronize import Condition

from cdp.demo.chunks import RenderedChunk, Renderer, Shop


@dataclass(frozen=True, slots=True)
class _Turns:
    """State shared by the workers: whose turn it is to write, and where the files end."""

    condition: Condition
    turn: Synchronized[int]
    failed: Synchronized[int]
    ends: SynchronizedArray[int]
    fds: tuple[int, ...]


_RENDERER: Renderer | None = None
_TURNS: _Turns | None = None


def _install(shop: Shop, turns: _Turns) -> None:
    global _RENDERER, _TURNS
    _RENDERER = Renderer(shop)
    _TURNS = turns


def _render_and_write(k: int) -> tuple[int, int]:
    """Worker task: render chunk `k`, append it in turn; returns (orders, consent rows)."""
    assert _RENDERER is not None and _TURNS is not None, "worker was not initialised"
    turns = _TURNS
    try:
        chunk = _RENDERER.render(k)
        parts = (chunk.customers, chunk.orders, chunk.consents, chunk.events)
        with turns.condition:
            turns.condition.wait_for(lambda: turns.turn.value == k or turns.failed.value != 0)
            if turns.failed.value:
                raise RuntimeError("another worker failed")
            for i, data in enumerate(parts):
                _write_at(turns.fds[i], data, turns.ends[i])
                turns.ends[i] += len(data)
            turns.turn.value = k + 1
            turns.condition.notify_all()
    except BaseException:
        with turns.condition:
            turns.failed.value = 1
            turns.condition.notify_all()
        raise
    return chunk.order_count, chunk.consent_count


def _write_at(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def render_parallel(shop: Shop, fds: Sequence[int], workers: int) -> Iterator[tuple[int, int]]:
    """Render all chunks with `workers` processes, appending to the files `fds` in order.

    The files must be positioned at their ends (headers written and flushed). Yields each
    chunk's (orders, consent rows) once it has been written, in chunk order.
    """
    context = multiprocessing.get_context("fork")
    turns = _Turns(
        condition=context.Condition(),
        turn=context.Value("q", 0),
        failed=context.Value("i", 0),
        ends=context.Array("q", [os.lseek(fd, 0, os.SEEK_END) for fd in fds]),
        fds=tuple(fds),
    )
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_install, initargs=(shop, turns)
    ) as pool:
        pending: deque[Future[tuple[int, int]]] = deque()
        next_chunk = 0
        while next_chunk < shop.chunks or pending:
            while next_chunk < shop.chunks and len(pending) < 2 * workers:
                pending.append(pool.submit(_render_and_write, next_chunk))
                next_chunk += 1
            yield pending.popleft().result()


def render_here(shop: Shop) -> Iterator[RenderedChunk]:
    """Render all chunks in this process, in order."""
    renderer = Renderer(shop)
    for k in range(shop.chunks):
        yield renderer.render(k)
