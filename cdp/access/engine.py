"""The process-wide policy engine, built once from ``CDP_POLICY_DIR`` (or the repository's
``policies/``) and shared by every request, CLI command and export in the process.

The engine caches decisions per policy snapshot, so one instance per process is what makes a
decision cost a dictionary lookup. ``reload_policy_engine()`` swaps in the files' current content
atomically (readers see the old or the new policy, never a mix).

Every process (each ``cdp serve`` worker, the scheduler, a long CLI command) picks up a changed
policy by itself: at most every ``CDP_POLICY_RELOAD_SECONDS`` the files' size and modification
time are compared with those loaded, and a change is loaded. Files that do not validate are
logged and the policy in force stays (the next change is tried again).
"""

from __future__ import annotations

import logging
import threading
import time

from cdp.access.policy import PolicyEngine, PolicyError
from cdp.logging import get_logger
from cdp.settings import get_settings

log = get_logger("cdp.access")

_engine: PolicyEngine | None = None
_lock = threading.Lock()


_next_look = 0.0
"""When (``time.monotonic()``) to look at the files again; 0: not before the engine exists."""


def get_policy_engine() -> PolicyEngine:
    """The process-wide engine (built on first use from the settings' ``policy_dir``), with the
    files' current content when they changed (module doc)."""
    engine = _engine
    if engine is not None:
        if _next_look and time.monotonic() >= _next_look:
            _look(engine)
        return engine
    return _build()


def _build() -> PolicyEngine:
    global _engine
    with _lock:
        if _engine is None:
            # Casbin logs the whole model and policy at INFO on every load; that is noise here.
            logging.getLogger("casbin").setLevel(logging.WARNING)
            _engine = PolicyEngine(get_settings().policy_dir)
            _schedule()
        return _engine


def _schedule() -> None:
    global _next_look
    every = get_settings().policy_reload_seconds
    _next_look = time.monotonic() + every if every > 0 else 0.0


def _look(engine: PolicyEngine) -> None:
    """Load the files if they changed since ``engine`` loaded them (one thread looks; the others
    go on with the policy in force)."""
    if not _lock.acquire(blocking=False):
        return
    try:
        _schedule()
        if not engine.files_changed():
            return
        try:
            version = engine.reload()
        except PolicyError as exc:
            log.error("policy files do not load; the policy in force stays", reason=str(exc))
            return
        log.info("policy reloaded", policy_version=version)
    finally:
        _lock.release()


def reload_policy_engine() -> str:
    """Re-read the policy files into the process-wide engine; return the new policy version."""
    return (_engine or _build()).reload()  # not through get_policy_engine: it may load too


def reset_policy_engine() -> None:
    """Forget the engine (tests, or after changing ``CDP_POLICY_DIR``)."""
    global _engine, _next_look
    with _lock:
        _engine = None
        _next_look = 0.0
