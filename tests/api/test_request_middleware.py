"""The API's one middleware: request ids, the response deadline (a timer, no task per request)
and the canonical log line.

The deadline's main cases (a sync route's thread outliving its 504, a prompt answer untouched)
are in ``tests/ops/test_limits.py``; here: an async handler is cancelled, a response that has
started runs to its end, a late answer after the 504 is dropped, and a cancellation that is not
the deadline's still cancels the request."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio.to_thread
import pytest
import structlog
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send
from structlog.testing import LogCapture

from cdp.api.app import create_app
from cdp.api.middleware import RequestContextMiddleware, new_request_id
from cdp.settings import reset_settings
from tests.conftest import CdpEnv


def _deadline(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    monkeypatch.setenv("CDP_REQUEST_TIMEOUT_SECONDS", str(seconds))
    reset_settings()


def test_new_request_ids_are_uuid4_hex() -> None:
    ids = [new_request_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for rid in ids:
        parsed = uuid.UUID(hex=rid)
        assert parsed.hex == rid and parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_a_generated_request_id_is_echoed_and_a_safe_one_kept(cdp_env: CdpEnv) -> None:
    with TestClient(create_app()) as client:
        made = client.get("/healthz").headers["x-request-id"]
        assert uuid.UUID(hex=made).version == 4
        kept = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
        assert kept.headers["x-request-id"] == "abc-123"
        unsafe = client.get("/healthz", headers={"X-Request-ID": "a b"}).headers["x-request-id"]
        assert uuid.UUID(hex=unsafe).version == 4


def _app_with(cancelled: threading.Event) -> FastAPI:
    app = create_app()

    @app.get("/sleeps-for-test")
    async def sleeps() -> dict[str, str]:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return {"late": "answer"}

    @app.get("/stubborn-for-test")
    async def stubborn() -> dict[str, str]:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
        return {"late": "answer"}  # swallowed the cancellation: answers anyway, too late

    @app.get("/streams-for-test")
    async def streams() -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield b"first,"
            await asyncio.sleep(1.5)  # past the deadline, after the response started
            yield b"second"

        return StreamingResponse(body(), media_type="text/plain")

    return app


def test_an_async_handler_past_the_deadline_is_cancelled_and_answered_504(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    _deadline(monkeypatch, 0.5)
    cancelled = threading.Event()
    with TestClient(_app_with(cancelled)) as client:
        began = time.monotonic()
        r = client.get("/sleeps-for-test")
        assert time.monotonic() - began < 10
        assert r.status_code == 504 and r.json()["error"]["code"] == "deadline_exceeded"
        assert r.json()["error"]["request_id"] == r.headers["x-request-id"]
        assert cancelled.is_set()
        assert client.get("/healthz").status_code == 200


def test_a_late_answer_after_the_504_is_dropped(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    _deadline(monkeypatch, 0.5)
    cancelled = threading.Event()
    with TestClient(_app_with(cancelled)) as client:
        r = client.get("/stubborn-for-test")
        assert cancelled.is_set()
        assert r.status_code == 504 and "late" not in r.text


def test_a_response_started_before_the_deadline_runs_to_its_end(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    _deadline(monkeypatch, 0.5)
    with TestClient(_app_with(threading.Event())) as client:
        r = client.get("/streams-for-test")
        assert r.status_code == 200 and r.text == "first,second"


def _scope() -> Scope:
    return {
        "type": "http",
        "method": "GET",
        "path": "/x",
        "raw_path": b"/x",
        "query_string": b"",
        "headers": [],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "scheme": "http",
        "root_path": "",
        "http_version": "1.1",
    }


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def test_a_cancellation_that_is_not_the_deadlines_cancels_the_request(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Server shutdown cancels the request's task (uvicorn does once its graceful-shutdown time is
    up): the middleware does not swallow it, neither before the deadline nor while the request
    waits, past its 504, for the worker thread its handler runs in."""
    _deadline(monkeypatch, 0.2)
    sent: list[Message] = []

    async def record(message: Message) -> None:
        sent.append(message)

    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.sleep(30)

    async def slow_in_a_thread(scope: Scope, receive: Receive, send: Send) -> None:
        # (the deadline waits for a worker thread: still waiting when the server cancels too)
        await anyio.to_thread.run_sync(time.sleep, 1.0)

    async def run(app: Any, cancel_after: float) -> asyncio.Task[None]:
        task = asyncio.ensure_future(RequestContextMiddleware(app)(_scope(), _no_body, record))
        await asyncio.sleep(cancel_after)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return task

    async def main() -> None:
        assert (await run(slow, 0.05)).cancelled()
        assert sent == []  # cancelled before the deadline: no 504
        assert (await run(slow_in_a_thread, 0.4)).cancelled()
        assert sent[0]["status"] == 504  # the deadline answered first

    asyncio.run(main())


def test_past_the_deadline_a_request_waits_for_its_worker_thread_but_not_for_its_client(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 504 leaves at the deadline; a handler's worker thread then runs to its end and the
    request's task ends only after it (so a server's graceful shutdown waits for it), while a
    wait on the client (a body that never comes) ends at once."""
    _deadline(monkeypatch, 0.2)
    began = time.monotonic()
    sent: list[tuple[float, Message]] = []
    finished: list[float] = []

    async def record(message: Message) -> None:
        sent.append((time.monotonic() - began, message))

    def work() -> None:
        time.sleep(1.0)
        finished.append(time.monotonic() - began)

    async def in_a_thread(scope: Scope, receive: Receive, send: Send) -> None:
        await anyio.to_thread.run_sync(work)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"late", "more_body": False})

    asyncio.run(RequestContextMiddleware(in_a_thread)(_scope(), _no_body, record))
    ended = time.monotonic() - began
    assert [m["status"] for _, m in sent if m["type"] == "http.response.start"] == [504]
    assert sent[0][0] < 0.9  # at the deadline, not when the thread ended
    assert finished and ended >= finished[0]

    async def body_never_comes() -> Message:
        await asyncio.sleep(30)
        return {"type": "http.disconnect"}

    async def reads_the_body(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()

    sent.clear()
    began = time.monotonic()
    asyncio.run(RequestContextMiddleware(reads_the_body)(_scope(), body_never_comes, record))
    assert time.monotonic() - began < 5
    assert [m["status"] for _, m in sent if m["type"] == "http.response.start"] == [504]


def test_after_the_504_the_apps_messages_never_reach_the_client(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    _deadline(monkeypatch, 0.2)
    sent: list[Message] = []

    async def record(message: Message) -> None:
        sent.append(message)

    async def stubborn(scope: Scope, receive: Receive, send: Send) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"late", "more_body": False})

    asyncio.run(RequestContextMiddleware(stubborn)(_scope(), _no_body, record))
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [504]
    bodies = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert b"deadline_exceeded" in bodies and b"late" not in bodies


@pytest.fixture
def captured() -> Iterator[LogCapture]:
    saved = structlog.get_config()
    cap = LogCapture()
    try:
        yield cap
    finally:
        structlog.configure(**saved)


def test_the_request_line_follows_a_new_logging_configuration(
    cdp_env: CdpEnv, captured: LogCapture
) -> None:
    """The middleware keeps its resolved logger only while structlog's configuration is the
    same: a reconfiguration (new processors) takes effect on the next request."""
    with TestClient(create_app()) as client:
        assert client.get("/healthz").status_code == 200  # resolves the logger
        structlog.configure(
            processors=[captured], wrapper_class=structlog.make_filtering_bound_logger(0)
        )
        assert client.get("/healthz").status_code == 200
    lines = [e for e in captured.entries if e["event"] == "request"]
    assert len(lines) == 1 and lines[0]["status"] == 200 and lines[0]["route"] == "/healthz"
