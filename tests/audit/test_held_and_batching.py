"""The connection kept open between uses, and the group committer's gathering of async records:
reused by one user at a time, dropped after an error, closed by ``Engine.dispose()``; a thread
that blocks on its record never waits for an event loop that is still gathering a batch."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest
import sqlalchemy as sa

from cdp.audit import batching
from cdp.audit.batching import GroupCommitter
from cdp.audit.held import HeldConnection
from cdp.audit.verify import verify_chain
from cdp.audit.writer import LOG, AuditEntry, append
from tests.audit.factories import make_entry
from tests.conftest import CdpEnv


def _entry(n: int) -> AuditEntry:
    return make_entry(request_id=f"r{n}")


def _write(conn: sa.Connection, batch: list[AuditEntry]) -> list[object]:
    return list(append(conn, batch))


def test_held_connection_is_reused_and_a_second_user_gets_another(cdp_env: CdpEnv) -> None:
    held = HeldConnection(cdp_env.runtime.data_engine)
    with held.use() as first:
        with held.use() as second:  # in use: a fresh one, closed after its use
            assert second is not first
            second.execute(sa.text("SELECT 1"))
        assert second.closed
    with held.use() as again:
        assert again is first
    assert not first.closed


def test_a_transaction_left_open_is_rolled_back(cdp_env: CdpEnv) -> None:
    held = HeldConnection(cdp_env.runtime.data_engine)
    with held.use() as conn:
        conn.execute(sa.text("SELECT 1"))  # autobegins
    assert not conn.in_transaction()
    with cdp_env.runtime.data_engine.begin() as other:  # nobody holds the write lock
        other.execute(sa.text("SELECT 1"))


def test_held_connection_is_dropped_after_an_error(cdp_env: CdpEnv) -> None:
    held = HeldConnection(cdp_env.runtime.data_engine)
    with pytest.raises(RuntimeError), held.use() as doubtful:
        raise RuntimeError("boom")
    assert doubtful.closed
    with held.use() as fresh:
        assert fresh is not doubtful
        assert fresh.execute(sa.text("SELECT 1")).scalar_one() == 1


def test_dispose_closes_the_held_connection(cdp_env: CdpEnv) -> None:
    engine = sa.create_engine(f"sqlite:///{cdp_env.home / 'held.db'}")
    held = HeldConnection(engine)
    with held.use() as idle:
        pass
    engine.dispose()
    assert idle.closed
    with held.use() as busy:
        engine.dispose()  # in use: closed when released
        assert not busy.closed
    assert busy.closed
    engine.dispose()


def test_concurrent_async_records_share_one_batch(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records queued in the same turn of the event loop are written together (the batch starts
    once a turn queued nothing new; the time bound is lifted so a slow machine cannot split it)."""
    monkeypatch.setattr(batching, "MAX_GATHER_SECONDS", 60.0)
    committer = GroupCommitter(cdp_env.runtime.data_engine)
    sizes: list[int] = []

    def write(conn: sa.Connection, batch: list[AuditEntry]) -> list[object]:
        sizes.append(len(batch))
        return _write(conn, batch)

    async def many() -> list[object]:
        return await asyncio.gather(*(committer.submit_async(_entry(n), write) for n in range(20)))

    assert len(asyncio.run(many())) == 20
    assert sizes == [20]
    assert verify_chain(runtime=cdp_env.runtime).ok


def test_a_blocking_thread_takes_over_a_batch_being_gathered(cdp_env: CdpEnv) -> None:
    """A sync submit from the event loop's own thread, while the loop gathers a batch, must lead
    itself (waiting for the loop would wait forever)."""
    committer = GroupCommitter(cdp_env.runtime.data_engine)
    results: list[object] = []

    async def both() -> None:
        pending = asyncio.ensure_future(committer.submit_async(_entry(1), _write))
        await asyncio.sleep(0)  # queued; the gathering callback is scheduled, not yet run
        results.append(committer.submit(_entry(2), _write))  # blocks the loop's thread
        results.append(await pending)

    runner = threading.Thread(target=asyncio.run, args=(both(),), daemon=True)
    runner.start()
    runner.join(timeout=30)
    assert not runner.is_alive(), "the blocking submit waited for the gathering loop"
    with cdp_env.runtime.data_engine.connect() as conn:
        seqs = [r[0] for r in conn.execute(sa.select(LOG.c.seq).order_by(LOG.c.seq))]
    assert seqs == [1, 2]
    assert sorted(r.request_id for r in results) == ["r1", "r2"]  # type: ignore[attr-defined]
    assert verify_chain(runtime=cdp_env.runtime).ok


def _frames_in_wal(path: str) -> int:
    """Frames in the WAL since it was last restarted (a passive checkpoint's ``log`` count)."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        return int(other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])
    finally:
        other.close()


def test_committer_checkpoints_between_its_batches(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: the committer's own commits never checkpoint (its connection has the automatic
    checkpoint off, and that setting stays off the pool); every CHECKPOINT_EVERY batches the
    leader checkpoints before its next batch, so the WAL is restarted and stays short however
    many batches follow one another (a checkpoint beside the appends never caught up with them:
    the WAL grew by every batch)."""
    engine = cdp_env.runtime.data_engine
    if engine.dialect.name != "sqlite":
        pytest.skip("WAL checkpoints are SQLite's")
    monkeypatch.setattr(batching, "CHECKPOINT_EVERY", 4)
    committer = GroupCommitter(engine)
    path = str(engine.url.database)
    empty = sqlite3.connect(path, isolation_level=None)
    try:  # start from an empty WAL, so that the first batch's frames are all it holds
        empty.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        empty.close()
    committer.submit(_entry(0), _write)
    per_batch = _frames_in_wal(path)  # the first batch's frames
    assert per_batch >= 2
    batches = 120
    for n in range(1, batches):  # back to back, as under load
        committer.submit(_entry(n), _write)
    assert committer.checkpoints == batches // 4
    # Restarted: what is left is at most the batches since the last checkpoint (and one more,
    # when a restart was missed); never the ~120 batches' frames of a WAL that only grows.
    assert _frames_in_wal(path) <= 8 * per_batch * 4
    assert _frames_in_wal(path) < (batches * per_batch) // 4
    assert committer._held is not None
    with committer._held.use() as held, held.begin():
        assert held.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == 0
    with engine.connect() as pooled, pooled.begin():
        assert pooled.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == 1000
    main_file_only = sqlite3.connect(f"file:{path}?immutable=1", uri=True)  # ignores the WAL
    try:
        in_file = main_file_only.execute("SELECT count(*) FROM audit_log").fetchone()[0]
    finally:
        main_file_only.close()
    assert in_file >= batches - 4  # all but the batches since the last checkpoint
    assert verify_chain(runtime=cdp_env.runtime).ok


def test_committer_asks_for_a_wal_restart_when_the_wal_stays_long(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: a reader holding an old snapshot keeps the WAL from restarting; once the WAL is
    past RESTART_FRAMES the committer's checkpoint asks for a restart, which waits at most
    RESTART_WAIT_MS and gives up without an error (appends go on); when the reader is gone, the
    WAL restarts."""
    engine = cdp_env.runtime.data_engine
    if engine.dialect.name != "sqlite":
        pytest.skip("WAL checkpoints are SQLite's")
    monkeypatch.setattr(batching, "CHECKPOINT_EVERY", 2)
    monkeypatch.setattr(batching, "RESTART_FRAMES", 20)
    monkeypatch.setattr(batching, "RESTART_WAIT_MS", 20)
    committer = GroupCommitter(engine)
    failures: list[BaseException] = []
    restart = committer._restart

    def watched(cursor: object) -> None:
        try:
            restart(cursor)
        except BaseException as exc:  # the committer would only log it
            failures.append(exc)
            raise

    monkeypatch.setattr(committer, "_restart", watched)
    path = str(engine.url.database)
    committer.submit(_entry(0), _write)
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM audit_log").fetchone()  # holds this snapshot
        for n in range(1, 41):
            committer.submit(_entry(n), _write)
        assert committer.restarts >= 1  # asked, and gave up: the reader still holds the WAL
        assert failures == []  # a restart that cannot happen yet is not an error
        held_back = _frames_in_wal(path)
        assert held_back >= 20
    finally:
        reader.close()
    for n in range(41, 45):
        committer.submit(_entry(n), _write)
    assert _frames_in_wal(path) < held_back  # restarted once the reader was gone
    result = verify_chain(runtime=cdp_env.runtime)
    assert result.ok and result.records == 45


def test_an_interrupted_checkpoint_does_not_leave_the_committer_without_a_leader(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A KeyboardInterrupt (not an Exception, so not logged and swallowed) raised in the
    checkpoint after a batch propagates, and the next record still finds a leader."""
    committer = GroupCommitter(cdp_env.runtime.data_engine)
    calls = 0

    def interrupted() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(committer, "_after_commit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        committer.submit(_entry(1), _write)
    results: list[object] = []
    second = threading.Thread(
        target=lambda: results.append(committer.submit(_entry(2), _write)), daemon=True
    )
    second.start()
    second.join(timeout=30)
    assert not second.is_alive(), "the second record waited for a leader that had gone"
    assert [r.request_id for r in results] == ["r2"]  # type: ignore[attr-defined]
    assert verify_chain(runtime=cdp_env.runtime).records == 2
