"""The cyclic garbage collector during an export's chunk loop.

Decrypting, hashing and writing a chunk allocates tens of thousands of short-lived containers
(rows, profiles, ciphers, cells); their counts keep triggering collections that walk the young
objects again and again and, every so often, the whole heap of a process that never settled it:
~10 us of the ~55 us a subject cost in ``bench/export.py`` (email + phone). Reference counting
frees nearly all of them anyway.

So, in a process whose heap is not frozen (the CLI, a benchmark), the chunk loop runs under the
batch connector's counted pause (:func:`cdp.ingest.collector.collector_paused`: the existing heap
frozen, the collector off, overlapping runs restored correctly) and collects the young
generations after each chunk (``gc.collect(1)``), which frees the rest, so memory stays as flat
as before. A process that already froze its heap (the API server, see ``cdp.api.heap``) keeps
its own settings: there full collections no longer walk that heap, and unfreezing it at the end
of an export would undo them.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from cdp.ingest.collector import collector_paused


def _nothing() -> None:
    return None


def _young() -> None:
    gc.collect(1)


@contextmanager
def chunk_collection() -> Iterator[Callable[[], None]]:
    """The block runs with the collector paused when that is safe (see the module doc); it
    yields the function to call after each chunk."""
    if gc.get_freeze_count() > 0 or not gc.isenabled():
        yield _nothing
        return
    with collector_paused():
        yield _young
