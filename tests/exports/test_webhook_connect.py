"""A webhook try's deadline covers opening its connection: the host-name lookup and every
address of the host, over real sockets on 127.0.0.1. Only the system resolver is stood in for
(``socket.getaddrinfo``, an OS facility): made slow, or made to answer chosen addresses.

Each delivery runs in a thread joined for a bound well above the deadline, so a try that runs
past its deadline fails the test at the bound instead of hanging it."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cdp.exports.run import run_export
from cdp.exports.webhook import DeliveryResult, RetryPolicy, WebhookSender
from tests.exports.conftest import World
from tests.exports.receiver import Receiver, _handler, running

_REAL_GETADDRINFO = socket.getaddrinfo
Lookup = Callable[[str, int], list[Any] | None]


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Lookup], threading.Event]]:
    """Install a stand-in resolver: ``answer(host, port)`` gives the addresses to return, or
    None for the system's answer. ``release`` ends every lookup made to wait on it (at
    teardown at the latest, so no lookup thread outlives the test by long)."""
    release = threading.Event()

    def install(answer: Lookup) -> threading.Event:
        def getaddrinfo(host: Any, port: Any, *args: Any, **kw: Any) -> Any:
            infos = answer(str(host), int(port or 0))
            return _REAL_GETADDRINFO(host, port, *args, **kw) if infos is None else infos

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        return release

    yield install
    release.set()


def _v4(address: tuple[str, int]) -> Any:
    return (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", address)


@pytest.fixture
def blackhole() -> Iterator[tuple[str, int]]:
    """A listener whose backlog is full: a further connection attempt gets no answer (its SYN
    is dropped), as from an address that drops packets."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    address = server.getsockname()
    queued: list[socket.socket] = []
    for _ in range(64):
        probe = socket.socket()
        probe.settimeout(0.3)
        try:
            probe.connect(address)
        except TimeoutError:
            probe.close()
            break
        queued.append(probe)
    else:
        pytest.fail("the listener's backlog never filled")
    yield address
    for sock in queued:
        sock.close()
    server.close()


def _sender(url: str, *, timeout: float, max_attempts: int) -> WebhookSender:
    return WebhookSender(
        url=url,
        secret="whsec_test",
        timeout_seconds=timeout,
        retry=RetryPolicy(max_attempts=max_attempts, sleep=lambda _s: None),
    )


def _deliver_within(sender: WebhookSender, bound: float) -> tuple[DeliveryResult, float]:
    """Deliver one batch in a thread; fail if it is not done within ``bound`` seconds."""
    out: list[DeliveryResult] = []
    started = time.monotonic()

    def run() -> None:
        with sender:
            out.append(sender.deliver(b'{"rows":[]}', idempotency_key="e.add.1", export_id="e"))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(bound)
    took = time.monotonic() - started
    assert not thread.is_alive(), f"the delivery ran past {bound} s"
    return out[0], took


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


def test_a_slow_host_lookup_ends_the_try_at_the_timeout_and_the_retry_delivers(
    resolver: Callable[[Lookup], threading.Event],
) -> None:
    lookups: list[str] = []
    with running(Receiver(secret="whsec_test")) as rx:
        port = _port(rx.url)

        def answer(host: str, _port: int) -> list[Any] | None:
            if host != "slow.hook.test":
                return None
            lookups.append(host)
            if len(lookups) == 1:  # the first lookup takes 30 s; the second answers at once
                release.wait(30)
            return [_v4(("127.0.0.1", port))]

        release = resolver(answer)
        sender = _sender(f"http://slow.hook.test:{port}/hook", timeout=0.5, max_attempts=3)
        result, took = _deliver_within(sender, bound=1.5)
    assert result == DeliveryResult(True, 2, 200, None)
    assert len(rx.requests) == 1 and len(lookups) == 2
    assert took >= 0.45  # the first try waited for its lookup until its deadline
    assert rx.requests[0]["headers"]["Host"] == f"slow.hook.test:{port}"


def test_a_host_lookup_slow_every_time_dead_letters_as_a_timeout(
    resolver: Callable[[Lookup], threading.Event],
) -> None:
    def answer(host: str, _port: int) -> list[Any] | None:
        if host != "slow.hook.test":
            return None
        release.wait(30)
        return []

    release = resolver(answer)
    sender = _sender("http://slow.hook.test:8080/hook", timeout=0.5, max_attempts=3)
    result, took = _deliver_within(sender, bound=4.5)  # 3 tries, each < 3x the deadline
    assert result == DeliveryResult(False, 3, None, "timeout")
    assert took >= 1.4  # each try did wait for its lookup until its deadline


def test_addresses_that_never_answer_end_the_try_at_the_timeout(
    resolver: Callable[[Lookup], threading.Event], blackhole: tuple[str, int]
) -> None:
    # eight addresses, none answering: each used to be tried for the whole timeout (4 s a try)
    resolver(lambda host, _p: [_v4(blackhole)] * 8 if host == "dark.hook.test" else None)
    sender = _sender(f"http://dark.hook.test:{blackhole[1]}/hook", timeout=0.5, max_attempts=2)
    result, took = _deliver_within(sender, bound=3.0)  # 2 tries, each < 3x the deadline
    assert result == DeliveryResult(False, 2, None, "timeout")
    assert took >= 0.9


def test_an_address_that_never_answers_leaves_time_for_the_next(
    resolver: Callable[[Lookup], threading.Event], blackhole: tuple[str, int]
) -> None:
    # the first address takes its share of the deadline (half: two addresses), not all of it
    with running(Receiver(secret="whsec_test")) as rx:
        port = _port(rx.url)
        good = _v4(("127.0.0.1", port))
        resolver(lambda host, _p: [_v4(blackhole), good] if host == "two.hook.test" else None)
        sender = _sender(f"http://two.hook.test:{port}/hook", timeout=1.0, max_attempts=2)
        result, took = _deliver_within(sender, bound=3.0)
    assert result == DeliveryResult(True, 1, 200, None)
    assert 0.4 <= took < 1.0


def test_an_export_whose_host_lookup_is_slow_dead_letters_after_its_tries(
    world: World, resolver: Callable[[Lookup], threading.Event]
) -> None:
    with running(Receiver()) as rx:
        port = _port(rx.url)

        def answer(host: str, p: int) -> list[Any] | None:
            if host != "localhost" or p != port:
                return None
            release.wait(5)  # before, each try waited for it: 15 s
            return [_v4(("127.0.0.1", port))]

        release = resolver(answer)
        world.person({"email": "slow@example.com"})
        world.destination(
            "hook",
            "webhook",
            "email_marketing",
            ["email"],
            min_audience=1,
            url=f"http://localhost:{port}/hook",
            timeout_seconds=0.5,
            max_attempts=3,
        )
        started = time.monotonic()
        result = run_export(
            runtime=world.rt,
            ctx=world.ctx("email_marketing"),
            segment="everyone",
            destination="hook",
            clock=world.clock,
        )
        took = time.monotonic() - started
    assert rx.requests == []
    assert result.status == "partial" and result.counts.failed_delivery == 1
    with world.rt.data_engine.connect() as conn:
        (dead,) = conn.execute(sa.text("SELECT * FROM webhook_deliveries")).mappings()
    assert dead["status"] == "dead_letter" and dead["attempts"] == 3
    assert dead["last_error"] == "timeout"
    # three tries of 0.5 s each (< 3x the deadline a try), plus up to 0.5 + 1.0 s of backoff
    assert took < 3 * 1.5 + 1.5


def _certificate(host: str, directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls_is_checked_against_the_url_host_name_not_the_address(
    resolver: Callable[[Lookup], threading.Event],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the connection goes to 127.0.0.1, but the TLS handshake names (SNI) and verifies the URL's
    # host, and the request carries it as Host; a certificate for another name is refused
    cert, key = _certificate("hook.example.test", tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore[assignment,misc,func-returns-value]
    rx = Receiver(secret="whsec_test")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rx))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    port = server.server_address[1]
    loopback = [_v4(("127.0.0.1", port))]
    resolver(lambda host, _p: loopback if host.endswith(".example.test") else None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        good = _sender(f"https://hook.example.test:{port}/hook", timeout=2.0, max_attempts=1)
        result, _ = _deliver_within(good, bound=6.0)
        other = _sender(f"https://other.example.test:{port}/hook", timeout=2.0, max_attempts=1)
        refused, _ = _deliver_within(other, bound=6.0)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert result == DeliveryResult(True, 1, 200, None)
    assert names[0] == "hook.example.test"
    assert rx.requests[0]["headers"]["Host"] == f"hook.example.test:{port}"
    assert refused == DeliveryResult(False, 1, None, "ConnectError")
    assert len(rx.requests) == 1
