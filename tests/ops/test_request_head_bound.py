"""``cdp serve`` bounds a request's line and headers (16 KiB): with httptools, which uvicorn
picks when installed, one connection could send a header of hundreds of megabytes and the worker
kept it all before any authentication or rate limit applied."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path
from urllib.parse import urlsplit

from cdp.api.http_server import MAX_REQUEST_HEAD_BYTES
from tests.conftest import CdpEnv
from tests.crash.helpers import start_server


def _send(base: str, head: bytes) -> bytes:
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as conn:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.sendall(head)  # the server may close before the whole head is sent
        try:
            return conn.recv(200)
        except ConnectionResetError:
            return b""


def test_a_request_head_past_16_kib_is_refused(cdp_env: CdpEnv, tmp_path: Path) -> None:
    proc, base = start_server(tmp_path / "server.log")
    try:
        small = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 1000 + b"\r\n\r\n"
        assert _send(base, small).startswith(b"HTTP/1.1 200")
        big = (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: "
            + b"a" * (256 * MAX_REQUEST_HEAD_BYTES)
            + b"\r\n\r\n"
        )
        answer = _send(base, big)
        assert not answer.startswith(b"HTTP/1.1 200"), answer
        assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer
        assert _send(base, small).startswith(b"HTTP/1.1 200")  # the server serves on
    finally:
        proc.terminate()
        proc.wait(15)
