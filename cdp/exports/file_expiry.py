"""Export files are a hand-off to the destination's tool, not a store: retention deletes them.

``CDP_EXPORT_FILE_DAYS`` after a run finished, :func:`expire_export_files` (called by
:func:`cdp.privacy.retention.run_retention`) deletes the files that run wrote under
``CDP_EXPORT_DIR``: the adds and removes recorded in its manifest's ``outputs`` and the
``<export id>.manifest.json`` beside them (the manifest itself stays on the run row), then sets
the run's ``files_deleted_at``. Only those paths are considered, never the rest of the
directory, and only a regular file is deleted: a symbolic link (or a directory, a pipe) found at
one of them is left alone and not followed (cdp never writes one there; the rule of
:func:`cdp.cli.paths.plain_file_or_absent`). A file already gone is no error. A file named
after another export than the run's is not touched either (a manifest is trusted for its own
files only).

This is what removes an erased person's plaintext from cdp's disk: an erasure does not rewrite
files shared with everyone else exported with them; its outcome says how long they are kept.
"""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cdp.exports.destinations import DestinationKind
from cdp.exports.outputs import export_dir
from cdp.exports.records import RUNS
from cdp.logging import get_logger
from cdp.runtime import Runtime

BATCH = 500
"""Runs read (and marked) per transaction."""

log = get_logger("cdp.exports")


def run_files(runtime: Runtime, export_id: str, manifest: dict[str, Any] | None) -> list[Path]:
    """The files the run ``export_id`` wrote, by its manifest: its file outputs, and the manifest
    file beside them (or in its destination's directory, for a webhook's)."""
    if manifest is None:
        return []
    dest = manifest.get("destination") or {}
    files: list[Path] = []
    if dest.get("kind") != DestinationKind.WEBHOOK.value:  # a webhook's "path" is its URL
        for out in manifest.get("outputs") or []:
            path = out.get("path")
            if path and Path(path).is_absolute():
                files.append(Path(path))
    folder = files[0].parent if files else export_dir(runtime) / str(dest.get("name", ""))
    files.append(folder / f"{export_id}.manifest.json")
    # only files named after this run: a manifest is not trusted for anyone else's
    return [f for f in dict.fromkeys(files) if f.name.startswith(f"{export_id}.")]


def _regular(path: Path) -> bool:
    """Whether ``path`` itself (not what a link points to) is a regular file."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _delete(path: Path) -> bool:
    """Delete ``path`` if it is a regular file; whether it was. ``unlink`` never follows a link,
    so a link swapped in after the check is removed itself, its target untouched."""
    if not _regular(path):
        return False
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def expire_export_files(*, runtime: Runtime, now: datetime, dry_run: bool = False) -> int:
    """Delete the files of every run finished more than ``CDP_EXPORT_FILE_DAYS`` before ``now``
    and not treated yet, and mark those runs; the number of files deleted (``dry_run``: that
    would be, and nothing changes)."""
    cutoff = now - timedelta(days=runtime.settings.export_file_days)
    due = sa.and_(
        RUNS.c.status != "running",
        RUNS.c.finished_at.is_not(None),
        RUNS.c.finished_at < cutoff,
        RUNS.c.files_deleted_at.is_(None),
    )
    deleted = 0
    after = ""
    while True:
        query = (
            sa.select(RUNS.c.id, RUNS.c.manifest)
            .where(due, RUNS.c.id > after)
            .order_by(RUNS.c.id)
            .limit(BATCH)
        )
        with runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
            rows = conn.execute(query).all()
        if not rows:
            return deleted
        after = rows[-1].id
        for row in rows:
            manifest = json.loads(row.manifest) if row.manifest else None
            for path in run_files(runtime, row.id, manifest):
                if dry_run:
                    deleted += _regular(path)
                elif _delete(path):
                    deleted += 1
                elif path.is_symlink():
                    log.warning("export file is a link, left alone", export_id=row.id)
        if not dry_run:
            ids = [r.id for r in rows]
            with runtime.data_engine.begin() as conn:
                conn.execute(sa.update(RUNS).where(RUNS.c.id.in_(ids)).values(files_deleted_at=now))
