"""Readiness: can this process serve requests right now?

Each check answers only yes or no (a probe is public; reasons go to the log, never the answer):
both databases answer, both schemas are at the migration heads this code expects, and the master
key material loads and matches the key store's key-check values (:mod:`cdp.crypto.key_checks`).
Engines are the process's shared ones (no new pools per probe); on SQLite the checks read
without taking the write lock, so a long ingestion never stalls a probe.
"""

from __future__ import annotations

from typing import Final

from cdp.access.engine import get_policy_engine
from cdp.crypto.key_checks import mismatch_error, mismatches, secrets_in_use_for
from cdp.db import revisions
from cdp.db.engine import get_engine
from cdp.logging import get_logger
from cdp.runtime import key_file_for
from cdp.settings import Settings

CHECKS: Final = ("data_database", "key_store", "migrations", "key_file", "policy")

log = get_logger("cdp.health")


def readiness(*, settings: Settings) -> dict[str, bool]:
    """Every check in :data:`CHECKS`, True when it passed."""
    result = dict.fromkeys(CHECKS, False)
    at_head = True
    for check, store, url in (
        ("data_database", "data", settings.data_url),
        ("key_store", "keystore", settings.keys_url),
    ):
        try:  # the check every process that opens the runtime makes (cdp.runtime)
            state = revisions.schema_state(get_engine(url), store)  # type: ignore[arg-type]
            result[check] = True
            at_head = at_head and state.at_heads
        except Exception as exc:  # any driver error means "not ready"
            log.warning("readiness check failed", check=check, error_type=type(exc).__name__)
            at_head = False
    result["migrations"] = at_head and result["data_database"] and result["key_store"]
    try:
        material = key_file_for(settings).load()
        data_engine = get_engine(settings.data_url)
        problems = mismatches(
            get_engine(settings.keys_url), material, secrets_in_use=secrets_in_use_for(data_engine)
        )
        if problems:
            raise mismatch_error(problems)
        result["key_file"] = True
    except Exception as exc:
        log.warning("readiness check failed", check="key_file", error_type=type(exc).__name__)
    try:  # a policy in force (a process whose files went bad since keeps the one it loaded)
        get_policy_engine()
        result["policy"] = True
    except Exception as exc:
        log.warning("readiness check failed", check="policy", error_type=type(exc).__name__)
    return result
