"""Webhook delivery against a real HTTP receiver on 127.0.0.1: signatures, retries, idempotency,
dead letters, no redirects, a deadline per try, answers never read, unusable URLs; and the
signing secret stored encrypted."""

from __future__ import annotations

import json
import time

import pytest
import sqlalchemy as sa

from cdp.exports.destinations import get_destination
from cdp.exports.ledger import recipients_of
from cdp.exports.run import run_export
from cdp.exports.signing_secrets import rotate_secret, signing_secret
from cdp.exports.webhook import (
    DeliveryResult,
    RetryPolicy,
    WebhookSender,
    signature_header,
    verify_signature,
)
from tests.exports.conftest import World
from tests.exports.receiver import Receiver, running


def _retry(max_attempts: int = 4) -> tuple[RetryPolicy, list[float]]:
    waits: list[float] = []
    return RetryPolicy(
        max_attempts=max_attempts,
        base_seconds=0.5,
        cap_seconds=8,
        sleep=waits.append,
        rand=lambda: 1.0,
    ), waits


def _setup(world: World, rx: Receiver, n: int, **kw: object) -> list[str]:
    ids = [world.person({"email": f"w{i}@example.com", "first_name": "Zed"}) for i in range(n)]
    created = world.destination(
        "hook", "webhook", "email_marketing", ["email"], min_audience=1, url=rx.url, **kw
    )
    rx.secret = created.signing_secret or ""
    return ids


def _run(world: World, retry: RetryPolicy):  # type: ignore[no-untyped-def]
    return run_export(
        runtime=world.rt,
        ctx=world.ctx("email_marketing"),
        segment="everyone",
        destination="hook",
        clock=world.clock,
        retry=retry,
    )


def _deliveries(world: World) -> list[dict[str, object]]:
    with world.rt.data_engine.connect() as conn:
        return [
            dict(r._mapping)
            for r in conn.execute(sa.text("SELECT * FROM webhook_deliveries ORDER BY seq"))
        ]


def test_signed_batches_verify_and_500_then_200_delivers_once(world: World) -> None:
    retry, waits = _retry()
    with running(Receiver(script=[500])) as rx:
        _setup(world, rx, 5, batch_size=2)
        result = _run(world, retry)
    assert all(r["verified"] for r in rx.requests)
    keys = [r["key"] for r in rx.requests]
    # batch 1 tried twice (500, 200) with the same key; batches 2 and 3 once
    assert len(keys) == 4 and keys[0] == keys[1] and len(set(keys)) == 3
    assert len(rx.processed) == 3
    assert sorted(r["email"] for r in rx.rows) == sorted(f"w{i}@example.com" for i in range(5))
    assert waits == [0.5]  # one backoff before the second try
    assert result.status == "succeeded" and result.counts.sent == 5
    assert [d["status"] for d in _deliveries(world)] == ["delivered"] * 3
    assert _deliveries(world)[0]["attempts"] == 2
    assert all(r["headers"]["X-CDP-Export-Id"] == result.export_id for r in rx.requests)


def test_4xx_is_not_retried_and_becomes_a_dead_letter(world: World) -> None:
    retry, waits = _retry()
    with running(Receiver(script=[400])) as rx:
        ids = _setup(world, rx, 3, batch_size=2)
        result = _run(world, retry)
    assert len(rx.requests) == 2 and waits == []
    c = result.counts
    assert result.status == "partial" and c.failed_delivery == 2 and c.sent == 1 and c.adds_up()
    dead = [d for d in _deliveries(world) if d["status"] == "dead_letter"]
    assert len(dead) == 1 and dead[0]["last_status"] == 400
    failed = json.loads(str(dead[0]["subject_ids"]))
    # the batch was sent: the receiver read it, although it refused it, so it stays recorded
    assert len(failed) == 2 and all(len(recipients_of(s, runtime=world.rt)) == 1 for s in failed)
    # the next run sends the dead-lettered subjects again (they are not in the sync state)
    with running(Receiver()) as rx2:
        with world.rt.data_engine.begin() as conn:
            conn.execute(sa.text("UPDATE export_destinations SET url = :u"), {"u": rx2.url})
        rx2.secret = rx.secret
        again = _run(world, _retry()[0])
    assert again.counts.sent == 2 and again.counts.unchanged == 1
    assert sorted(r["email"] for r in rx2.rows) == sorted(
        f"w{i}@example.com" for i in range(3) if ids[i] in failed
    )


def test_5xx_every_time_dead_letters_after_n_tries(world: World) -> None:
    retry, waits = _retry(max_attempts=3)
    with running(Receiver(script=[503] * 10)) as rx:
        _setup(world, rx, 1)
        result = _run(world, retry)
    assert len(rx.requests) == 3 and waits == [0.5, 1.0]
    assert result.counts.failed_delivery == 1 and result.status == "partial"
    (dead,) = _deliveries(world)
    assert dead["status"] == "dead_letter" and dead["attempts"] == 3


def test_timeout_is_retried(world: World) -> None:
    retry, _ = _retry()
    with running(Receiver(delay_first=1.5)) as rx:
        _setup(world, rx, 1, timeout_seconds=0.5)
        result = _run(world, retry)
    assert len(rx.requests) == 2
    assert result.counts.sent == 1 and len(rx.processed) == 1


def test_redirects_are_not_followed(world: World) -> None:
    retry, _ = _retry()
    with running(Receiver()) as other, running(Receiver()) as rx:
        rx.redirect_to = other.url
        _setup(world, rx, 1)
        result = _run(world, retry)
    assert len(rx.requests) == 1 and other.requests == []
    assert result.counts.failed_delivery == 1
    assert _deliveries(world)[0]["last_error"] == "redirect_not_followed"


def test_unusable_rows_below_the_minimum_send_nothing(world: World) -> None:
    from cdp.errors import AudienceTooSmallError

    ok = [world.person({"email": f"ok{i}@example.com"}) for i in range(2)]
    for _ in range(2):
        world.person({"email": ""})  # stored, but nothing usable once decrypted
    with running(Receiver()) as rx:
        created = world.destination(
            "hook",
            "webhook",
            "email_marketing",
            ["email"],
            min_audience=3,
            url=rx.url,
            batch_size=1,
        )
        rx.secret = created.signing_secret or ""
        with pytest.raises(AudienceTooSmallError):
            _run(world, _retry()[0])
    assert rx.requests == []
    assert all(recipients_of(s, runtime=world.rt) == [] for s in ok)  # nobody received it


def test_signature_scheme() -> None:
    body = b'{"rows":[]}'
    now = int(time.time())
    header = signature_header("s3cret", now, body)
    assert header.startswith(f"t={now},v1=")
    assert verify_signature("s3cret", header, body, now=now)
    assert not verify_signature("other", header, body, now=now)
    assert not verify_signature("s3cret", header, body + b" ", now=now)
    assert not verify_signature("s3cret", header, body, now=now + 301)  # replay window


def test_signing_secret_is_encrypted_at_rest(world: World) -> None:
    created = world.destination(
        "hook", "webhook", "email_marketing", ["email"], url="https://hooks.example.com/cdp"
    )
    secret = created.signing_secret
    assert secret and secret.startswith("whsec_") and "whsec" not in repr(created)
    with world.rt.data_engine.connect() as conn:
        blob = conn.execute(sa.text("SELECT secret_ct FROM export_destinations")).scalar_one()
    assert secret.encode() not in bytes(blob)
    dest = get_destination(runtime=world.rt, name="hook")
    assert signing_secret(runtime=world.rt, destination=dest) == secret
    new = rotate_secret(runtime=world.rt, name="hook").secret
    assert new != secret and signing_secret(runtime=world.rt, destination=dest) == new
    # rotating the KEK: the secret is re-wrapped under the new version on next use
    world.rt.provider.rotate()
    assert signing_secret(runtime=world.rt, destination=dest) == new
    with world.rt.data_engine.connect() as conn:
        version = conn.execute(
            sa.text("SELECT secret_kek_version FROM export_destinations")
        ).scalar_one()
    assert version == world.rt.provider.current_version()


@pytest.mark.parametrize(
    "url", ["http://hooks.example.com/x", "https://user:pw@hooks.example.com/x", "ftp://a/b", ""]
)
def test_webhook_urls_are_checked(world: World, url: str) -> None:
    from cdp.errors import InvalidInputError

    with pytest.raises(InvalidInputError):
        world.destination("hook", "webhook", "email_marketing", ["email"], url=url)


def test_a_failed_export_keeps_the_ledger_rows_of_the_batches_it_sent(world: World) -> None:
    """An export that fails after some batches were delivered (an interrupt, a database error)
    used to drop every ledger row: the people whose data the receiver holds vanished from "who
    received my data" and from erasure notices. Only the rows still buffered are forgotten."""
    retry, _ = _retry()
    chunks: list[int] = []

    def interrupt(action: str, done: int, total: int) -> None:
        chunks.append(done)
        raise KeyboardInterrupt  # after the chunk's full batches went out

    with running(Receiver()) as rx:
        ids = _setup(world, rx, 5, batch_size=2)
        with pytest.raises(KeyboardInterrupt):
            run_export(
                runtime=world.rt,
                ctx=world.ctx("email_marketing"),
                segment="everyone",
                destination="hook",
                clock=world.clock,
                retry=retry,
                progress=interrupt,
            )
    assert chunks == [5] and len(rx.processed) == 2  # two batches of two; one row buffered
    received = {r["email"] for r in rx.rows}
    kept = [s for s in ids if recipients_of(s, runtime=world.rt)]
    assert len(kept) == 4 and len(received) == 4
    with world.rt.data_engine.connect() as conn:
        status = conn.execute(sa.text("SELECT status FROM export_runs")).scalar_one()
    assert status == "failed"


# A receiver that misbehaves must not hold an export (and the erasure lock it keeps) for
# longer than the destination's timeout per try, nor fill the exporter's memory, nor crash it.


def _sender(rx: Receiver, *, timeout: float, max_attempts: int = 2) -> WebhookSender:
    return WebhookSender(
        url=rx.url,
        secret=rx.secret,
        timeout_seconds=timeout,
        retry=RetryPolicy(max_attempts=max_attempts, sleep=lambda _s: None),
    )


def _deliver(sender: WebhookSender, key: str = "exp_t.add.1") -> tuple[DeliveryResult, float]:
    started = time.monotonic()
    with sender:
        result = sender.deliver(b'{"rows":[]}', idempotency_key=key, export_id="exp_t")
    return result, time.monotonic() - started


def test_a_receiver_trickling_its_headers_is_cut_off_at_the_timeout() -> None:
    # each header byte comes well within the timeout, the whole head takes 5 s: per-read
    # timeouts never fire, the per-try deadline does, and the try is retried as a timeout
    rx = Receiver(shapes=["trickle_headers"], trickle_seconds=0.2, trickle_bytes=25)
    with running(rx):
        result, took = _deliver(_sender(rx, timeout=0.5))
    assert result == DeliveryResult(True, 2, 200, None)
    assert len(rx.requests) == 2 and took < 2.5


def test_a_receiver_trickling_its_headers_every_time_dead_letters_as_a_timeout() -> None:
    rx = Receiver(shapes=["trickle_headers"] * 3, trickle_seconds=0.2, trickle_bytes=25)
    with running(rx):
        result, took = _deliver(_sender(rx, timeout=0.5, max_attempts=3))
    assert result == DeliveryResult(False, 3, None, "timeout")
    assert took < 4


def test_a_receiver_reading_the_batch_slowly_is_cut_off_at_the_timeout() -> None:
    # 40 MB read at about 10 MiB/s for 3 s: the writes keep making progress, so no per-write
    # timeout fires; the deadline cuts the try after 1 s (two tries: without the cut, the first
    # would have succeeded after 3 s: the two tries are what shows the cut), the second try is
    # read at once; the time bound (about 2 s on a quiet machine) leaves a busy machine room for
    # the backoff and the second 40 MB
    rx = Receiver(slow_read_first=3.0)
    body = b'{"rows":[],"pad":"%s"}' % (b"x" * 40_000_000)
    with running(rx):
        sender = _sender(rx, timeout=1.0)
        started = time.monotonic()
        with sender:
            result = sender.deliver(body, idempotency_key="exp_t.add.1", export_id="exp_t")
        took = time.monotonic() - started
    assert result == DeliveryResult(True, 2, 200, None)
    assert list(rx.processed) == ["exp_t.add.1"] and took < 12


def test_the_answer_body_is_not_waited_for() -> None:
    # Content-Length 20, then a byte every 0.25 s: the status decided the try, the body is
    # never read, so neither the timeout nor the 5 s the body would take are waited for
    rx = Receiver(shapes=["trickle_body"], trickle_seconds=0.25, trickle_bytes=20)
    with running(rx):
        result, took = _deliver(_sender(rx, timeout=1.0))
        assert rx.finished[0].wait(5)
    assert result == DeliveryResult(True, 1, 200, None)
    assert took < 0.9 and rx.body_bytes_sent.get(0, 0) < 20


def test_a_huge_answer_body_is_not_read() -> None:
    # 128 MiB offered: the sender takes none of it (the receiver gets out at most what the
    # kernel's socket buffers hold before the connection is closed under it)
    rx = Receiver(shapes=["big_body"])
    with running(rx):
        result, took = _deliver(_sender(rx, timeout=5.0))
        assert rx.finished[0].wait(10)
    assert result == DeliveryResult(True, 1, 200, None)
    assert rx.body_bytes_sent[0] < 32 * 1024 * 1024 and took < 3
    assert rx.requests[0]["headers"]["Accept-Encoding"] == "identity"


def test_a_body_that_is_not_the_gzip_it_claims_is_no_crash() -> None:
    # 503 with a broken gzip body: a failed try, retried; 200 with one: delivered (the status
    # decides, the body is never decoded)
    rx = Receiver(script=[503, 200], shapes=["bad_gzip", "bad_gzip"])
    with running(rx):
        result, _ = _deliver(_sender(rx, timeout=2.0, max_attempts=3))
    assert result == DeliveryResult(True, 2, 200, None)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:18931:80/hook",  # two ports
        "http://127.0.0.1:0x50/hook",
        "https://xn--a.example.com/hook",  # not a valid IDNA host name
    ],
)
def test_an_unusable_stored_url_fails_the_batch_without_an_exception(url: str) -> None:
    rx = Receiver()
    rx.url = url  # as stored before creation refused such URLs
    result, _ = _deliver(_sender(rx, timeout=1.0, max_attempts=3))
    assert result == DeliveryResult(False, 1, None, "invalid_url")


def test_an_export_to_a_stored_unusable_url_is_no_internal_error(world: World) -> None:
    from fastapi.testclient import TestClient

    from cdp.access.principals import create as create_principal
    from cdp.api.app import create_app

    world.person({"email": "u@example.com"})
    world.destination(
        "hook", "webhook", "email_marketing", ["email"], min_audience=1, url="https://h.example/in"
    )
    with world.rt.data_engine.begin() as conn:  # stored before creation checked ports
        conn.execute(
            sa.text("UPDATE export_destinations SET url = :u"),
            {"u": "http://127.0.0.1:18931:80/in"},
        )
    marketer = create_principal(runtime=world.rt, name="mk", roles=["marketer"], clock=world.clock)
    client = TestClient(create_app())
    r = client.post(
        "/v1/exports",
        headers={"Authorization": f"Bearer {marketer.token}", "X-Purpose": "email_marketing"},
        json={"segment": "everyone", "destination": "hook"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "partial"
    assert r.json()["manifest"]["counts"]["failed_delivery"] == 1
    assert [(d["status"], d["last_error"]) for d in _deliveries(world)] == [
        ("dead_letter", "invalid_url")
    ]


@pytest.mark.parametrize("host", ["0x7f000001", "2130706433", "127.1", "0177.0.0.1"])
def test_a_stored_url_with_a_legacy_ipv4_host_is_not_posted_to(world: World, host: str) -> None:
    """A URL stored before creation refused them: the resolver reads ``0x7f000001`` (and
    ``2130706433``, ``127.1``) as 127.0.0.1, and the export posted its batch to the receiver
    there. The sender now refuses such a host as an unusable URL before connecting."""
    world.person({"email": "u@example.com"})
    with running(Receiver()) as rx:
        made = world.destination(
            "hook", "webhook", "email_marketing", ["email"], min_audience=1, url=rx.url
        )
        rx.secret = made.signing_secret or ""
        stored = rx.url.replace("127.0.0.1", host)
        with world.rt.data_engine.begin() as conn:
            conn.execute(sa.text("UPDATE export_destinations SET url = :u"), {"u": stored})
        result = _run(world, _retry()[0])
    assert rx.requests == [] and rx.arrivals == 0
    assert result.status == "partial" and result.counts.failed_delivery == 1
    assert [(d["status"], d["last_error"]) for d in _deliveries(world)] == [
        ("dead_letter", "invalid_url")
    ]
