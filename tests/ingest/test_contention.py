"""A batch that keeps colliding with concurrent writers fails cleanly and retryably."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from cdp.api.errors import status_for
from cdp.clock import utcnow
from cdp.db.models import Identity, Subject, new_subject_id
from cdp.errors import WriteContentionError
from cdp.ingest.batch import BatchContext, Outcome
from cdp.ingest.batch_commit import _RETRIES, converter_for, run_batch
from cdp.ingest.bulk import insert_rows
from tests.conftest import CdpEnv


def _run(cdp_env: CdpEnv, error: Exception, attempts: list[int] | None = None) -> None:
    """run_batch with a writer that always raises ``error`` (counting its calls)."""

    def writer(_ctx: BatchContext, _items: Sequence[tuple[int, Any]]) -> Outcome:
        if attempts is not None:
            attempts.append(1)
        raise error

    run_batch(
        cdp_env.runtime,
        writer,
        [],
        source="test",
        converter=converter_for(cdp_env.runtime),
        clock=utcnow,
        recorded_by="test",
    )


def test_persistent_unique_violations_become_a_retryable_error(cdp_env: CdpEnv) -> None:
    with pytest.raises(WriteContentionError) as caught:
        _run(cdp_env, IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert "send it again" in str(caught.value)
    assert status_for(caught.value) == 503


def test_database_errors_are_not_called_contention(cdp_env: CdpEnv) -> None:
    with pytest.raises(OperationalError):
        _run(cdp_env, OperationalError("BEGIN", {}, Exception("database is locked")))


def test_retries_are_bounded(cdp_env: CdpEnv) -> None:
    attempts: list[int] = []
    with pytest.raises(WriteContentionError):
        _run(cdp_env, IntegrityError("INSERT", {}, Exception("duplicate key")), attempts)
    assert len(attempts) == _RETRIES


def test_bulk_insert_reports_a_taken_key_as_integrity_error(cdp_env: CdpEnv) -> None:
    """On PostgreSQL rows go through the driver's COPY; a unique violation there must reach the
    batch retry as SQLAlchemy's IntegrityError, as it does on SQLite."""
    now = utcnow()
    subject = new_subject_id()
    subjects, identities = Subject.__table__, Identity.__table__  # type: ignore[attr-defined]
    with cdp_env.runtime.data_engine.begin() as conn:
        insert_rows(conn, subjects, [{"id": subject, "created_at": now, "updated_at": now}])
    row = {"subject_id": subject, "kind": "email", "token": "t" * 64, "key_version": 1}
    row["created_at"] = now
    with pytest.raises(IntegrityError), cdp_env.runtime.data_engine.begin() as conn:
        insert_rows(conn, identities, [row, row])
