"""Orphaned data keys: keys in the key store whose owner is gone from the data database.

A data key belongs to a subject (``subjects.id``) or, for the corrections of a rectification
filed before the person was known, to a privacy request (a ``privacy_payloads`` row of that
request with no subject). Erasure, retention and merges destroy a key when its owner goes, so a
live installation holds no orphan but the rare key of a batch that crashed between creating its
keys and committing its rows. Restoring a key-store backup older than the data brings back the
keys of everyone erased since: they decrypt nothing in the live data (the rows are gone), but
they would decrypt an older *data* backup again. :func:`destroy_orphans` finds such keys by
walking the key store in id order and looking each page up in the data database, and destroys
them.

Keys younger than ``older_than`` are never destroyed, whatever the data says: ingestion and
request filing create a key in the key store before the data transaction that stores its owner
commits, so a young key without an owner may be one whose owner is about to appear. The grace of
a run that destroys is at least :data:`MIN_DESTROY_AGE` (an hour: far longer than any batch
takes to commit), so no run can destroy the key of a batch still being written. A run that
would destroy more than half of the store's keys is refused unless ``allow_majority`` is given:
that is what pointing cdp at the wrong (or an empty) data database looks like, and destroying
keys cannot be undone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from cdp.audit.operations import record_key_operation
from cdp.db.models import Subject
from cdp.errors import ConflictError, InvalidInputError
from cdp.ingest.bulk import select_in
from cdp.logging import get_logger
from cdp.privacy.erasure_steps import clear_wals
from cdp.privacy.models import PrivacyPayload
from cdp.runtime import Runtime

log = get_logger("cdp.privacy")

PAGE = 5_000
MIN_DESTROY_AGE = timedelta(hours=1)
"""The shortest ``older_than`` a run that destroys accepts (counting accepts any)."""
REQUEST_KEY_PREFIX = "pr_"
SUBJECTS = Subject.__table__  # type: ignore[attr-defined]
PAYLOADS = PrivacyPayload.__table__  # type: ignore[attr-defined]


@dataclass
class OrphanReport:
    """What a run found (and, unless ``dry_run``, destroyed)."""

    dry_run: bool
    keys: int = 0
    """Data keys in the key store."""
    orphaned: int = 0
    """Keys older than the grace period whose owner is gone: destroyed unless ``dry_run``."""
    recent: int = 0
    """Keys without an owner but younger than the grace period: kept."""
    destroyed: int = 0
    wal_cleared: dict[str, bool] = field(default_factory=dict)
    orphan_ids: list[str] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "keys": self.keys,
            "orphaned": self.orphaned,
            "recent_kept": self.recent,
            "destroyed": self.destroyed,
            "wal_cleared": self.wal_cleared,
        }


def _owned(runtime: Runtime, ids: list[str]) -> set[str]:
    """The ids among ``ids`` whose owner (a subject, or a request's own payload) exists."""
    requests = [i for i in ids if i.startswith(REQUEST_KEY_PREFIX)]
    with runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        owned = {r[0] for r in select_in(conn, SUBJECTS, "id", ids, ("id",))}
        if requests:
            owned.update(
                conn.execute(
                    sa.select(PAYLOADS.c.request_id).where(
                        PAYLOADS.c.request_id.in_(requests), PAYLOADS.c.subject_id.is_(None)
                    )
                ).scalars()
            )
    return owned


def find_orphans(runtime: Runtime, *, now: datetime, older_than: timedelta) -> OrphanReport:
    """Walk the key store and list the keys without an owner (nothing is changed)."""
    report = OrphanReport(dry_run=True)
    cutoff = now - older_than
    after: str | None = None
    while True:
        page = runtime.keystore.page_ids(after, PAGE)
        if not page:
            break
        after = page[-1][0]
        report.keys += len(page)
        owned = _owned(runtime, [i for i, _ in page])
        for key_id, created in page:
            if key_id in owned:
                continue
            if created > cutoff:
                report.recent += 1
            else:
                report.orphan_ids.append(key_id)
    report.orphaned = len(report.orphan_ids)
    return report


def destroy_orphans(
    runtime: Runtime,
    *,
    now: datetime,
    older_than: timedelta,
    client: str,
    dry_run: bool = True,
    allow_majority: bool = False,
) -> OrphanReport:
    """Find the orphaned keys and, unless ``dry_run``, destroy them and clear SQLite's WALs.

    The audit records of the destruction (``client``: where it runs) are committed first: if
    they cannot be written, nothing is destroyed. Raises ``ConflictError`` (nothing destroyed)
    when more than half of the keys would go and ``allow_majority`` is not set, and
    ``InvalidInputError`` when destroying with ``older_than`` under :data:`MIN_DESTROY_AGE`."""
    if not dry_run and older_than < MIN_DESTROY_AGE:
        raise InvalidInputError(
            "destroying takes a grace of at least 1h: a younger key may belong to a batch still "
            "writing its owner",
            field="older_than",
        )
    report = find_orphans(runtime, now=now, older_than=older_than)
    report.dry_run = dry_run
    if dry_run or not report.orphan_ids:
        return report
    if report.orphaned * 2 > report.keys and not allow_majority:
        raise ConflictError(
            f"{report.orphaned} of the {report.keys} data keys have no owner in the data "
            "database: check that CDP_DATABASE_URL names the right database; if it does, run "
            "again with --allow-majority. Nothing was destroyed"
        )
    record_key_operation(
        runtime=runtime, action="destroy_orphans", client=client, subject_ids=report.orphan_ids
    )
    for start in range(0, report.orphaned, PAGE):
        report.destroyed += runtime.vault.shred(report.orphan_ids[start : start + PAGE])
    report.wal_cleared = clear_wals(runtime)
    log.info("orphaned data keys destroyed", destroyed=report.destroyed, keys=report.keys)
    return report
