"""SIGHUP to a one-worker ``cdp serve`` is logged and ignored: its default action ended the
server at once, requests in flight and background jobs with it (the policy files are loaded by
themselves when they change, so nothing needs the signal)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx

from tests.conftest import CdpEnv
from tests.crash.helpers import start_server


def test_sighup_leaves_a_one_worker_server_running(cdp_env: CdpEnv, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    proc, base = start_server(log, workers=1)
    try:
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "SIGHUP ignored" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None, log.read_text()[-2000:]
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "SIGHUP ignored" in log.read_text()


def test_a_port_already_taken_stops_cdp_serve_before_its_jobs_run(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    import os
    import subprocess

    from tests.crash.helpers import CLI

    first, base = start_server(tmp_path / "first.log", workers=1)
    try:
        port = base.rsplit(":", 1)[1]
        done = subprocess.run(
            [*CLI, "serve", "--port", port],
            env=os.environ.copy(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        first.terminate()
        first.wait(30)
    assert done.returncode == 3, done.stderr[-2000:]
    assert "retention run" not in done.stderr and "scheduler started" not in done.stderr
