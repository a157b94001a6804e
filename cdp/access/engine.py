"""The process-wide policy engine, built once from ``CDP_POLICY_DIR`` (or the repository's
``policies/``) and shared by every request, CLI command and export in the process.

The engine caches decisions per policy snapshot, so one instance per process is what makes a
decision cost a dictionary lookup. ``reload_policy_engine()`` swaps in the files' current content
atomically (readers see the old or the new policy, never a mix).
"""

from __future__ import annotations

import logging
import threading

from cdp.access.policy import PolicyEngine
from cdp.settings import get_settings

_engine: PolicyEngine | None = None
_lock = threading.Lock()


def get_policy_engine() -> PolicyEngine:
    """The process-wide engine (built on first use from the settings' ``policy_dir``)."""
    global _engine
    engine = _engine
    if engine is not None:
        return engine
    with _lock:
        if _engine is None:
            # Casbin logs the whole model and policy at INFO on every load; that is noise here.
            logging.getLogger("casbin").setLevel(logging.WARNING)
            _engine = PolicyEngine(get_settings().policy_dir)
        return _engine


def reload_policy_engine() -> str:
    """Re-read the policy files into the process-wide engine; return the new policy version."""
    return get_policy_engine().reload()


def reset_policy_engine() -> None:
    """Forget the engine (tests, or after changing ``CDP_POLICY_DIR``)."""
    global _engine
    with _lock:
        _engine = None
