"""Erasure and exports exclude each other.

An export holds the lock shared for its whole run (from recomputing membership to committing its
ledger rows); an erasure takes it exclusively. So no export can send a subject whose erasure
committed before the export did, and an erasure always sees every export that included the
subject in the recipients ledger (its list of destinations to notify is complete).

PostgreSQL: a session-level advisory lock (works across hosts and workers). SQLite: an ``flock``
on a file beside the database (SQLite is single-host by nature). See :mod:`cdp.db.locks`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from cdp.db import locks
from cdp.runtime import Runtime

#: Advisory lock key ("cdp" + 1), the same in every process of one installation.
LOCK_KEY = 0x63647001


def _lock_path(runtime: Runtime) -> Path:
    return locks.lock_dir(runtime) / "erasure.lock"


def export_guard(runtime: Runtime) -> contextlib.AbstractContextManager[None]:
    """Held by an export for its whole run (many exports may hold it at once)."""
    return locks.hold(runtime, key=LOCK_KEY, path=_lock_path(runtime), shared=True)


def erasure_guard(runtime: Runtime) -> contextlib.AbstractContextManager[None]:
    """Held by an erasure: waits for running exports, and holds new ones off until done."""
    return locks.hold(runtime, key=LOCK_KEY, path=_lock_path(runtime))


def no_export_running(runtime: Runtime) -> contextlib.AbstractContextManager[bool]:
    """The exclusive lock if it is free now (True: no export runs, none starts until exit),
    without waiting (False: an export or an erasure holds it)."""
    return locks.try_hold(runtime, key=LOCK_KEY, path=_lock_path(runtime))
