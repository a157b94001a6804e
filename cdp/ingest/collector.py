"""Python's cyclic garbage collector paused while batch connectors run.

A batch allocates hundreds of thousands of short-lived objects (rows, records, tuples) whose
counts keep triggering collections that walk every young object again and again, and
periodically the whole heap: ~30% of order and ~13% of customer ingestion time. Reference
counting frees nearly all of them anyway; the batch connector runs one collection of the young
generations after each batch (``gc.collect(1)``), which frees the rest, so memory stays as flat as
before. The heap that existed before the run is frozen meanwhile, and what the run keeps (cached
data keys) ages into the old generation, so that collection walks only the last batch's survivors
(a full walk of a warm process costs ~100 ms).

The pause is process-wide, so it is counted: overlapping runs (threads of one process) pause the
collector once and the last one out restores it as the first one found it. The batch connector
and the export chunk loop (:mod:`cdp.exports.collector`, which skips it in a process that has
already frozen its heap) use it; the API server's requests leave the collector alone.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """The collector disabled and the existing heap frozen for the block (see module doc)."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
            gc.freeze()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.unfreeze()
                if _was_enabled:
                    gc.enable()
