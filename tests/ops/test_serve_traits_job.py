"""``cdp serve`` keeps traits fresh by itself: a real server computes traits never computed at
its start (in the scheduler's thread), a restart leaves fresh traits alone, SIGTERM stops it
cleanly, and ``CDP_TRAITS_INTERVAL=off`` or ``--no-traits`` turns the job off."""

from __future__ import annotations

import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import CdpEnv
from tests.crash.helpers import start_server
from tests.traits.factories import OrderSpec, add_orders, make_subjects, subject_ids


def _computed_at(cdp_env: CdpEnv) -> datetime | None:
    """The time of the stored order traits (one per recompute)."""
    with cdp_env.runtime.data_engine.connect() as conn:
        stamps = conn.execute(sa.text("SELECT DISTINCT computed_at FROM subject_traits")).all()
    assert len(stamps) <= 1
    return datetime.fromisoformat(str(stamps[0][0])).replace(tzinfo=UTC) if stamps else None


def _serve(log: Path, settle: str, extra: list[str] | None = None) -> str:
    """Start ``cdp serve`` with its scheduler, wait for ``settle`` in its log (and one more
    poll), stop it with SIGTERM; its log. It must exit 0."""
    proc, _ = start_server(log, scheduler=True, extra=extra)
    try:
        deadline = time.monotonic() + 60
        while settle not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.1)
        time.sleep(0.5)  # a few more scheduler passes
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    finally:
        if proc.poll() is None:
            proc.kill()
    output = log.read_text()
    assert code == 0 and "background jobs stopped" in output, output[-3000:]
    return output


def test_serve_computes_stale_traits_once_and_not_again_on_restart(
    cdp_env: CdpEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDP_EXPORT_SCHEDULE_POLL_SECONDS", "0.1")
    ids = subject_ids(3, prefix=0x5E)
    now = datetime.now(UTC)
    with cdp_env.runtime.data_engine.begin() as conn:
        make_subjects(conn, ids)
        add_orders(
            conn, [OrderSpec(s, now - timedelta(days=k + 2), 30.0) for k, s in enumerate(ids)]
        )
    assert _computed_at(cdp_env) is None

    first = _serve(tmp_path / "first.log", "traits run")
    assert first.count("traits run") == 1, first[-3000:]
    stamp = _computed_at(cdp_env)
    assert stamp is not None and abs(stamp - now) < timedelta(minutes=5)

    again = _serve(tmp_path / "again.log", "export scheduler started")
    assert "traits run" not in again, again[-3000:]  # a day has not passed: still fresh
    assert _computed_at(cdp_env) == stamp


@pytest.mark.parametrize("how", ["setting", "flag"])
def test_serve_with_the_traits_job_off_computes_nothing(
    cdp_env: CdpEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    monkeypatch.setenv("CDP_EXPORT_SCHEDULE_POLL_SECONDS", "0.1")
    if how == "setting":
        monkeypatch.setenv("CDP_TRAITS_INTERVAL", "off")
    with cdp_env.runtime.data_engine.begin() as conn:
        make_subjects(conn, subject_ids(2, prefix=0x5F))
    extra = ["--no-traits"] if how == "flag" else None
    output = _serve(tmp_path / "off.log", "export scheduler started", extra)
    assert '"traits_job": false' in output  # the scheduler runs without the traits job
    assert "traits run" not in output and _computed_at(cdp_env) is None
