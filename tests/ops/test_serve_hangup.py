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
