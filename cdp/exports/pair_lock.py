"""One export at a time per destination and segment.

Two runs of the same segment to the same destination (a scheduled run under ``cdp serve`` and a
manual ``cdp export run`` or ``POST /v1/exports``) would both stage against the same sync state,
send every add twice and race to write the same sync rows when they close. So every export holds
an exclusive lock keyed on the pair for its whole run, taken after the erasure lock
(:func:`cdp.privacy.erasure_lock.export_guard`): an advisory lock on a hash of the pair on
PostgreSQL, an ``flock`` on a per-pair file under ``export-locks/`` beside the SQLite database
(:mod:`cdp.db.locks`).

A second run does not wait: it is refused at once with
:class:`~cdp.errors.ExportRunningError` (API 409 ``export_running``, CLI exit status 2), before
its run is stored. Waiting would hold an API request's worker thread, and the caller's deadline,
for as long as the other run takes (minutes to hours for a large webhook export with retries),
and the waiting run would then send next to nothing anyway. The scheduler skips the occurrence
and leaves it due, so the next poll tries again (:mod:`cdp.exports.schedule`).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

from cdp.db import locks
from cdp.errors import ExportRunningError
from cdp.exports.destinations import DestinationInfo
from cdp.privacy.erasure_lock import LOCK_KEY
from cdp.runtime import Runtime

_DIR = "export-locks"


def _key(destination_id: str, segment: str) -> int:
    key = locks.key_of("cdp.export", destination_id, segment)
    return key ^ 1 if key == LOCK_KEY else key  # never the erasure lock's key


@contextlib.contextmanager
def pair_lock(runtime: Runtime, dest: DestinationInfo, segment: str) -> Iterator[None]:
    """Hold the lock of (``dest``, ``segment``) for the block, or raise
    :class:`~cdp.errors.ExportRunningError` at once when another export holds it."""
    folder = locks.lock_dir(runtime) / _DIR
    if runtime.data_engine.dialect.name != "postgresql":
        folder.mkdir(mode=0o700, exist_ok=True)
    name = hashlib.sha256(f"{dest.id}\x00{segment}".encode()).hexdigest()[:32]
    path = folder / f"{name}.lock"  # (not opened on PostgreSQL)
    with locks.try_hold(runtime, key=_key(dest.id, segment), path=path) as got:
        if not got:
            raise ExportRunningError(destination=dest.name, segment=segment)
        yield


__all__ = ["pair_lock"]
