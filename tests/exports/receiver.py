"""A real webhook receiver on 127.0.0.1 (``http.server`` in a thread) for the delivery tests.

It verifies each request's signature, records every request (headers, raw body up to 1 MiB and
arrival time, so a test can verify a signature with other secrets), processes each idempotency key
once (as the documented receiver contract asks), and answers from a script of status codes
(then 200), optionally sleeping first (timeouts), reading the first request's body slowly
(``slow_read_first`` seconds at about 10 MiB/s) or redirecting. A script of answer shapes
(``shapes``, then ``plain``) makes it misbehave the way hostile or broken receivers do:

* ``trickle_headers``: the status line, then one header byte every ``trickle_seconds``
  (``trickle_bytes`` of them) before the headers end;
* ``trickle_body``: the headers with ``Content-Length: trickle_bytes``, then one body byte
  every ``trickle_seconds``;
* ``big_body``: a body of ``big_bytes`` zeros sent as fast as the client takes it;
* ``bad_gzip``: ``Content-Encoding: gzip`` over a body that is not gzip.

``body_bytes_sent[n]`` is how many body bytes the answer to request ``n`` got out before the
client went away, and ``finished[n]`` is set once that answer has ended either way.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cdp.exports.webhook import verify_signature


@dataclass
class Receiver:
    secret: str = ""
    script: list[int] = field(default_factory=list)
    delay_first: float = 0.0
    hold_first: threading.Event | None = None
    """The first request (or request number ``hold_at``, from 0) is answered once this is set
    (at most 30 s): a test decides when, whatever the time its server took to start on a busy
    machine."""
    hold_at: int = 0
    slow_read_first: float = 0.0
    redirect_to: str | None = None
    shapes: list[str] = field(default_factory=list)
    trickle_seconds: float = 0.2
    trickle_bytes: int = 25
    big_bytes: int = 128 * 1024 * 1024
    body_bytes_sent: dict[int, int] = field(default_factory=dict)
    finished: dict[int, threading.Event] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    processed: dict[str, dict[str, Any]] = field(default_factory=dict)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrivals: int = 0

    @property
    def rows(self) -> list[dict[str, str]]:
        return [r for body in self.processed.values() for r in body["rows"]]


def _handler(rx: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            with rx.lock:
                first, rx.arrivals = rx.arrivals == 0, rx.arrivals + 1
            try:
                body = self._body(slow=rx.slow_read_first if first else 0.0)
            except OSError:  # the client gave up sending
                return
            key = self.headers.get("Idempotency-Key", "")
            ok = verify_signature(
                rx.secret, self.headers.get("X-CDP-Signature", ""), body, now=time.time()
            )
            with rx.lock:
                n = len(rx.requests)
                rx.requests.append(
                    {
                        "key": key,
                        "verified": ok,
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": body if len(body) <= 1 << 20 else None,  # not 40 MB ones
                        "at": time.time(),
                    }
                )
                status = rx.script[n] if n < len(rx.script) else 200
                shape = rx.shapes[n] if n < len(rx.shapes) else "plain"
                rx.finished[n] = threading.Event()
            if n == 0 and rx.delay_first:
                time.sleep(rx.delay_first)
            if n == rx.hold_at and rx.hold_first is not None:
                rx.hold_first.wait(30)
            if rx.redirect_to is not None:
                self.send_response(307)
                self.send_header("Location", rx.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if status == 200:
                if not ok:
                    status = 401
                else:
                    with rx.lock:
                        rx.processed.setdefault(key, json.loads(body))
            try:
                self._answer(n, status, shape)
            except OSError:  # the client went away (as it should from a hostile answer)
                self.close_connection = True
            finally:
                rx.finished[n].set()

        def _body(self, *, slow: float) -> bytes:
            """The request body; for ``slow`` seconds taken 1 MiB every 100 ms, then at once."""
            length = int(self.headers["Content-Length"])
            parts: list[bytes] = []
            until = time.monotonic() + slow
            while length and time.monotonic() < until:
                part = self.rfile.read(min(1024 * 1024, length))
                if not part:
                    break
                parts.append(part)
                length -= len(part)
                time.sleep(0.1)
            parts.append(self.rfile.read(length))
            return b"".join(parts)

        def _answer(self, n: int, status: int, shape: str) -> None:
            if shape == "trickle_headers":
                self.wfile.write(b"HTTP/1.1 %d Whatever\r\nX-Slow: " % status)
                for _ in range(rx.trickle_bytes):
                    time.sleep(rx.trickle_seconds)
                    self.wfile.write(b"a")
                self.wfile.write(b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            self.send_response(status)
            if shape == "trickle_body":
                self.send_header("Content-Length", str(rx.trickle_bytes))
                self.end_headers()
                for _ in range(rx.trickle_bytes):
                    time.sleep(rx.trickle_seconds)
                    self.wfile.write(b"a")
                    rx.body_bytes_sent[n] = rx.body_bytes_sent.get(n, 0) + 1
            elif shape == "big_body":
                self.send_header("Content-Length", str(rx.big_bytes))
                self.end_headers()
                chunk = bytes(64 * 1024)
                sent = 0
                while sent < rx.big_bytes:
                    self.wfile.write(chunk[: rx.big_bytes - sent])
                    sent += min(len(chunk), rx.big_bytes - sent)
                    rx.body_bytes_sent[n] = sent
            elif shape == "bad_gzip":
                junk = b"this is not gzip at all"
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(junk)))
                self.end_headers()
                self.wfile.write(junk)
            else:
                self.send_header("Content-Length", "0")
                self.end_headers()

    return Handler


@contextmanager
def running(rx: Receiver, *, port: int = 0) -> Iterator[Receiver]:
    """``rx`` served on 127.0.0.1 (on ``port``, or any free one)."""
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(rx))
    rx.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rx
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
