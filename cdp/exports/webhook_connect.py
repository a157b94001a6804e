"""Opening a webhook try's TCP connection within the try's deadline.

httpx's default transport opens a connection with ``socket.create_connection``: the system
resolver's host-name lookup, which no timeout bounds, then each of the host's addresses in
turn, each for up to the whole connect timeout. A slow DNS server, or a host whose addresses
all drop the connection attempt, held a try (and the export's thread) far past its deadline.

:class:`DeadlineBackend` is an httpcore network backend (httpcore's documented extension point,
the library under httpx) that takes the connect timeout it is given as the budget for the whole
stage: it looks the host up in a daemon thread waited on for at most the budget (a lookup still
running then is left to end on its own, its answer unused), then tries the addresses in the
resolver's order, each for an equal share of what remains (the last for all of it), so one
address that drops the attempt leaves time for the next. The connection is opened to the
address itself; httpcore still does TLS with the URL's host name (SNI and the certificate
check) and the request still carries its ``Host`` header, so only where the lookup runs moved.
No address is refused here that the system's own connect would have used.

:class:`DeadlineTransport` is an httpx transport over an httpcore connection pool with that
backend (httpx has no public way to give its own transport a network backend), mapping
httpcore's errors to httpx's of the same name as httpx's transport does.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, Final

import httpcore
import httpx

_ERRORS: Final[tuple[tuple[type[Exception], type[httpx.TransportError]], ...]] = (
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)

AddrInfo = tuple[Any, ...]


def _lookup(host: str, port: int, budget: float | None) -> list[AddrInfo]:
    """``getaddrinfo`` in a daemon thread, waited on for at most ``budget`` seconds."""
    answer: list[list[AddrInfo] | Exception] = []
    done = threading.Event()

    def run() -> None:
        try:
            answer.append(list(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)))
        except Exception as exc:  # handed to the waiting thread, which raises it
            answer.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name="webhook-lookup", daemon=True).start()
    if not done.wait(budget):
        raise httpcore.ConnectTimeout("host lookup timed out")
    (result,) = answer
    if isinstance(result, OSError):  # socket.gaierror, as create_connection would raise it
        raise httpcore.ConnectError(type(result).__name__) from result
    if isinstance(result, Exception):
        raise result
    if not result:
        raise httpcore.ConnectError("host lookup found no address")
    return result


class DeadlineBackend(httpcore.SyncBackend):
    """httpcore's blocking backend, with the lookup and every address within one budget."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        ends = None if timeout is None else time.monotonic() + timeout
        addresses = _lookup(host, port, timeout)
        last: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for i, info in enumerate(addresses):
            share = None
            if ends is not None:
                remaining = ends - time.monotonic()
                if remaining <= 0:
                    break
                share = remaining / (len(addresses) - i)
            try:
                return super().connect_tcp(
                    info[4][0],  # the address itself: connecting looks nothing up
                    info[4][1],
                    timeout=share,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        if ends is not None and ends - time.monotonic() <= 0:
            raise httpcore.ConnectTimeout("connecting timed out") from last
        assert last is not None
        raise last


_HTTPCORE_ERRORS: Final = tuple(theirs for theirs, _ in _ERRORS)


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except _HTTPCORE_ERRORS as exc:
        raise next(ours for theirs, ours in _ERRORS if isinstance(exc, theirs))(str(exc)) from exc


class _Stream(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _httpx_errors():
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if callable(close):
            with _httpx_errors():
                close()


class DeadlineTransport(httpx.BaseTransport):
    """An httpx transport whose connections open through :class:`DeadlineBackend` (HTTP/1.1,
    certificates verified as httpx does by default, no connection kept alive)."""

    def __init__(self) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_keepalive_connections=0,
            network_backend=DeadlineBackend(),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = self._pool.handle_request(core_request)
        assert isinstance(response.stream, Iterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Stream(response.stream),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()
