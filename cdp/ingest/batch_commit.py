"""Committing one batch of records: one transaction, retried when a concurrent writer took a
token or an id first.

The file connector (:mod:`cdp.ingest.pipeline`) and the HTTP channel's group commit
(:mod:`cdp.ingest.group_commit`) write through :func:`run_batch`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError, OperationalError

from cdp.clock import Clock
from cdp.errors import KeyShreddedError, WriteContentionError
from cdp.ingest.batch import BatchContext, Outcome
from cdp.ingest.money import Converter
from cdp.logging import get_logger
from cdp.profiles.merge import SubjectGoneError
from cdp.runtime import Runtime

log = get_logger("cdp.ingest")

Writer = Callable[[BatchContext, Sequence[tuple[int, Any]]], Outcome]
_RETRIES = 5
SQLITE_CACHE_KIB = 32_768
"""Page cache of the SQLite connection that writes a batch (32 MB; the default is 2 MB)."""


def run_batch(
    runtime: Runtime,
    writer: Writer,
    items: Sequence[tuple[int, Any]],
    *,
    source: str,
    converter: Converter,
    clock: Clock,
    recorded_by: str,
) -> Outcome:
    """Write one batch in one transaction; retried when a concurrent writer took a token first.

    A subject whose data key is gone while its rows are still there (an erasure between its shred
    and its commit, or a merge's absorbed subject read before the merge committed) rolls the batch
    back too: resolved again, the record is refused by the erasure's tombstones (or follows the
    merge). A subject found so a second time has no key for good (an erasure stopped half-way, a
    key store restored from before an erasure): its records are refused as ``erased``, the rest
    of the batch is written."""
    keyless: set[str] = set()
    waited: set[str] = set()
    attempt = 0
    while True:
        try:
            with runtime.data_engine.begin() as conn:
                if conn.dialect.name == "sqlite":
                    # A batch touches index pages all over the B-trees (random subject ids and
                    # tokens); SQLite's default 2 MB page cache spills and re-reads them per row.
                    conn.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
                ctx = BatchContext(
                    runtime=runtime,
                    conn=conn,
                    now=clock(),
                    source=source,
                    converter=converter,
                    recorded_by=recorded_by,
                    keyless=frozenset(keyless),
                )
                outcome = writer(ctx, items)
        except KeyShreddedError as exc:
            sid = exc.subject_id
            if sid is None or sid in keyless:
                raise
            if sid in waited:
                keyless.add(sid)
                log.warning("ingest batch met a subject without a data key; refusing its records")
            else:
                waited.add(sid)
                log.warning("ingest batch met a subject being erased; retrying")
                backoff(len(waited))
            continue
        except (IntegrityError, OperationalError, SubjectGoneError) as exc:
            attempt += 1
            if attempt == _RETRIES:
                if isinstance(exc, OperationalError):
                    raise  # the database itself (locked, gone): reported as such
                raise WriteContentionError(
                    "concurrent writers kept taking the same identities or ids; nothing of "
                    "this write was stored, send it again"
                ) from exc
            log.warning("ingest batch conflicted with a concurrent writer; retrying")
            backoff(attempt)
            continue
        for res in outcome.resolutions:
            res.finish(runtime)
        return outcome


def backoff(attempt: int) -> None:
    """Wait before retrying a batch: writers that collided once collide again if they retry in
    step, so they are spread out."""
    time.sleep(random.uniform(0.005, 0.05) * attempt)  # noqa: S311 - jitter only


def converter_for(runtime: Runtime) -> Converter:
    return Converter(runtime.settings.fx_rates, runtime.settings.base_currency)
