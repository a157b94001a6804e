"""An unexpected error under ``cdp serve``: answered 500 and logged once, with its traceback.

The API's 500 handler logs the error; Starlette then re-raises it to the server, whose own
"Exception in ASGI application" line would repeat the same traceback."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.audit.factories import make_principal
from tests.conftest import CdpEnv
from tests.crash.helpers import start_server


def test_a_500_is_logged_once(cdp_env: CdpEnv, tmp_path: Path) -> None:
    token = make_principal(cdp_env.runtime, ["analyst"]).token
    headers = {"Authorization": f"Bearer {token}", "X-Purpose": "analytics"}
    log = tmp_path / "server.log"
    proc, base = start_server(log)
    try:
        assert httpx.get(f"{base}/v1/segments", headers=headers, timeout=10).status_code == 200
        with cdp_env.runtime.data_engine.begin() as conn:  # a value no reader expects
            conn.exec_driver_sql("UPDATE segment_versions SET rule = '{'")
        answer = httpx.get(f"{base}/v1/segments", headers=headers, timeout=10)
        assert answer.status_code == 500, answer.text
        assert answer.json()["error"]["code"] == "internal_error"
    finally:
        proc.terminate()
        proc.wait(30)
    output = log.read_text()
    with_traceback = [line for line in output.splitlines() if "JSONDecodeError" in line]
    assert len(with_traceback) == 1, output[-3000:]
    assert "unhandled error" in with_traceback[0]
    assert answer.headers["X-Request-ID"] in with_traceback[0]
    assert "Exception in ASGI application" not in output
