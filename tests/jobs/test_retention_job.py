"""The daily retention job runs retention on real storage and keeps going after a failure."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from structlog.testing import capture_logs

from cdp import jobs
from cdp.clock import FrozenClock
from tests.conftest import CdpEnv


def test_runs_until_stopped_and_logs_counts(cdp_env: CdpEnv) -> None:
    stop = threading.Event()
    clock = FrozenClock(datetime(2026, 11, 1, tzinfo=UTC))
    with capture_logs() as logs:
        t = threading.Thread(
            target=jobs.retention_loop,
            kwargs={
                "runtime": cdp_env.runtime,
                "stop": stop,
                "interval": timedelta(milliseconds=50),
                "clock": clock,
            },
        )
        t.start()
        stop.wait(0.3)
        stop.set()
        t.join(5)
    runs = [e for e in logs if e["event"] == "retention run"]
    assert not t.is_alive() and len(runs) >= 2
    assert runs[0]["dry_run"] is False and "rows" in runs[0]


def test_a_failing_run_is_logged_and_the_loop_goes_on(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def boom(**_: object) -> None:
        calls.append(1)
        raise RuntimeError("database went away")

    monkeypatch.setattr(jobs, "run_retention", boom)
    stop = threading.Event()
    with capture_logs() as logs:
        t = threading.Thread(
            target=jobs.retention_loop,
            kwargs={
                "runtime": cdp_env.runtime,
                "stop": stop,
                "interval": timedelta(milliseconds=20),
            },
        )
        t.start()
        stop.wait(0.2)
        stop.set()
        t.join(5)
    assert len(calls) >= 2
    assert any(e["event"] == "retention run failed" for e in logs)
