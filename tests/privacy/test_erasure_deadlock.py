"""An erasure whose data transaction deadlocks with a concurrent writer retries it; past its
retries it fails with a 503-style domain error (never a 500), and running the request again
finishes it. The consent ledger's unlock no longer masks the error with its own failure.

On PostgreSQL the deadlock is a real server error raised in the erasure's transaction (the
transaction is aborted, as after a real deadlock); on SQLite, which has no deadlocks, the driver
error is simulated. Either way it is injected at the exact point: the first registry entry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError

from cdp.api.errors import status_for
from cdp.consent.triggers import ledger_unlocked
from cdp.crypto.normalize import IdentityKind
from cdp.errors import ErasureContentionError
from cdp.privacy import erasure, requests, runner
from cdp.privacy.erasure import ATTEMPTS, is_tombstoned
from tests.conftest import CdpEnv
from tests.privacy.test_erasure_races import bob_and_alice, subject_of, verified_erasure
from tests.privacy.test_requests import ctx


class _SimulatedDeadlock(Exception):
    sqlstate = "40P01"


def _deadlock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            "DO $$ BEGIN RAISE EXCEPTION 'deadlock detected' USING ERRCODE = '40P01'; END $$"
        )
    raise OperationalError("DELETE FROM identities", {}, _SimulatedDeadlock("deadlock detected"))


def deadlocking(monkeypatch: pytest.MonkeyPatch, times: int) -> list[int]:
    """Make the first ``times`` erasure data transactions deadlock at their first registry entry
    (after the subject rows are locked); return the hits."""
    lock, apply = erasure._lock_subjects, erasure.apply_entry
    hits: list[int] = []
    fresh: list[bool] = []

    def lock_then_mark(conn: Connection, subject_ids: list[str]) -> None:
        lock(conn, subject_ids)
        fresh.append(True)

    def apply_or_deadlock(conn: Connection, *args: Any) -> None:
        if fresh and len(hits) < times:
            fresh.clear()
            hits.append(1)
            _deadlock(conn)
        apply(conn, *args)

    monkeypatch.setattr(erasure, "_lock_subjects", lock_then_mark)
    monkeypatch.setattr(erasure, "apply_entry", apply_or_deadlock)
    return hits


def test_the_ledger_unlock_does_not_mask_the_error_of_its_transaction(cdp_env: CdpEnv) -> None:
    engine = cdp_env.runtime.data_engine
    with (
        pytest.raises(DBAPIError) as caught,
        engine.begin() as conn,
        ledger_unlocked(conn, reason="test"),
    ):
        _deadlock(conn)
    assert getattr(caught.value.orig, "sqlstate", None) == "40P01"


def test_an_erasure_that_deadlocks_once_retries_and_completes(
    cdp_env: CdpEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = cdp_env.runtime
    bob, _alice = bob_and_alice(rt, tmp_path)
    rid = verified_erasure(rt, "alice@example.org")
    hits = deadlocking(monkeypatch, 1)
    done = runner.run(runtime=rt, ctx=ctx(), request_id=rid)
    assert hits == [1]
    assert done.status == "completed"
    assert subject_of(rt, IdentityKind.EMAIL, "alice@example.org") is None
    assert is_tombstoned(runtime=rt, kind=IdentityKind.EMAIL, raw="alice@example.org")
    assert subject_of(rt, IdentityKind.EMAIL, "bob@example.org") == bob


def test_an_erasure_that_keeps_deadlocking_is_a_503_and_running_it_again_finishes_it(
    cdp_env: CdpEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = cdp_env.runtime
    _bob, alice = bob_and_alice(rt, tmp_path)
    rid = verified_erasure(rt, "alice@example.org")
    hits = deadlocking(monkeypatch, ATTEMPTS)
    monkeypatch.setattr(erasure.time, "sleep", lambda _s: None)
    with pytest.raises(ErasureContentionError) as caught:
        runner.run(runtime=rt, ctx=ctx(), request_id=rid)
    assert len(hits) == ATTEMPTS
    assert status_for(caught.value) == 503
    assert "run it again" in str(caught.value)
    view = requests.get(runtime=rt, request_id=rid)
    assert view.status == "in_progress"
    assert view.steps[-1].note == "failed: write_contention"
    assert not rt.vault.has_key(alice)  # shredded; the rows are still there
    assert subject_of(rt, IdentityKind.EMAIL, "alice@example.org") == alice
    monkeypatch.undo()
    done = runner.run(runtime=rt, ctx=ctx(), request_id=rid)
    assert done.status == "completed"
    assert done.outcome is not None and done.outcome["deleted"]["subjects"] == 1
    assert subject_of(rt, IdentityKind.EMAIL, "alice@example.org") is None
    with rt.data_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM subjects")).scalar() == 1  # Bob
