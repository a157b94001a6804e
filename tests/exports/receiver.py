"""A real webhook receiver on 127.0.0.1 (``http.server`` in a thread) for the delivery tests.

It verifies each request's signature, records every request, processes each idempotency key
once (as the documented receiver contract asks), and answers from a script of status codes
(then 200), optionally sleeping first (timeouts) or redirecting.
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
    redirect_to: str | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    processed: dict[str, dict[str, Any]] = field(default_factory=dict)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def rows(self) -> list[dict[str, str]]:
        return [r for body in self.processed.values() for r in body["rows"]]


def _handler(rx: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            key = self.headers.get("Idempotency-Key", "")
            ok = verify_signature(
                rx.secret, self.headers.get("X-CDP-Signature", ""), body, now=time.time()
            )
            with rx.lock:
                n = len(rx.requests)
                rx.requests.append(
                    {"key": key, "verified": ok, "path": self.path, "headers": dict(self.headers)}
                )
                status = rx.script[n] if n < len(rx.script) else 200
            if n == 0 and rx.delay_first:
                time.sleep(rx.delay_first)
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
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


@contextmanager
def running(rx: Receiver) -> Iterator[Receiver]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rx))
    rx.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rx
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
