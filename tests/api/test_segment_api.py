"""The Segment-compatible API: auth, gzip, limits, per-message errors, replays, consent, GPC."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from threading import Event, Thread
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cdp.api import segment as segment_api
from cdp.api.app import create_app
from cdp.crypto.normalize import IdentityKind
from cdp.db.models import Identity
from cdp.errors import WriteContentionError
from cdp.ingest.batch import BatchContext, Outcome
from cdp.ingest.group_commit import GroupCommitter
from cdp.ingest.segment import ingest_messages
from cdp.ingest.sources import create_source, revoke_source
from tests.conftest import CdpEnv
from tests.factories import read_pii
from tests.ingest.helpers import count, dump_tables


@pytest.fixture
def client(cdp_env: CdpEnv) -> Iterator[TestClient]:
    with TestClient(create_app()) as c:
        yield c


@pytest.fixture
def write_key(cdp_env: CdpEnv) -> str:
    return create_source(runtime=cdp_env.runtime, name="web").write_key


def _msg(kind: str, **fields: Any) -> dict[str, Any]:
    """A message as analytics-python builds it."""
    base = {
        "type": kind,
        "messageId": str(uuid.uuid4()),
        "timestamp": "2026-03-01T10:00:00+00:00",
        "context": {"library": {"name": "analytics-python", "version": "2.3.2"}},
        "integrations": {},
    }
    base.update(fields)
    return base


def _post_batch(
    client: TestClient, key: str, messages: list[dict[str, Any]], **headers: str
) -> Any:
    """POST /v1/batch gzip-compressed with Basic auth, as Segment's client libraries send it."""
    body = json.dumps({"batch": messages, "sentAt": datetime.now(UTC).isoformat()}).encode()
    return client.post(
        "/v1/batch",
        content=gzip.compress(body),
        auth=(key, ""),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip", **headers},
    )


def _subject(env: CdpEnv, kind: IdentityKind, value: str) -> str | None:
    tok = env.runtime.tokenizer.token(kind, value).value
    with env.runtime.data_engine.connect() as conn:
        return conn.execute(
            sa.select(Identity.subject_id).where(  # type: ignore[call-overload]
                Identity.kind == kind.value, Identity.token == tok
            )
        ).scalar_one_or_none()


def _shop_batch() -> list[dict[str, Any]]:
    return [
        _msg("identify", userId="u-1", anonymousId="a-1",
             traits={"email": "Li.Na@Example.com", "firstName": "Na", "lastName": "Li",
                     "phone": "+86 139 1917 6120", "plan": "gold",
                     "address": {"city": "Hangzhou", "country": "CN"}}),
        _msg("track", userId="u-1", event="Product Viewed", properties={"sku": "P1"}),
        _msg("page", anonymousId="a-1", name="Home", properties={"path": "/"}),
        _msg("track", userId="u-1", event="Order Completed",
             properties={"order_id": "W-1", "revenue": 25.5, "currency": "EUR",
                         "products": [{"product_id": "P1", "sku": "P1", "price": 25.5,
                                       "quantity": 1, "name": "Tea", "category": "grocery"}]}),
    ]  # fmt: skip


def test_gzip_batch_with_basic_auth_is_accepted_and_stored(
    client: TestClient, write_key: str, cdp_env: CdpEnv
) -> None:
    response = _post_batch(client, write_key, _shop_batch())
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    rt = cdp_env.runtime
    sid = _subject(cdp_env, IdentityKind.CUSTOMER_ID, "u-1")
    assert sid is not None
    assert _subject(cdp_env, IdentityKind.ANONYMOUS_ID, "a-1") == sid
    assert _subject(cdp_env, IdentityKind.EMAIL, "li.na@example.com") == sid
    assert count(rt, "events", f"WHERE subject_id = '{sid}'") == 3
    with rt.data_engine.connect() as conn:
        order = conn.exec_driver_sql(
            "SELECT order_ref, total_minor, currency, subject_id FROM orders"
        ).one()
        items = conn.exec_driver_sql("SELECT price_minor, quantity FROM order_items").all()
    pii = read_pii(rt, sid)
    assert tuple(order) == ("W-1", 2550, "EUR", sid)
    assert [tuple(i) for i in items] == [(2550, 1)]
    assert rt.vault.decrypt(sid, "city", bytes(pii["city"])) == "Hangzhou"
    assert rt.vault.decrypt(sid, "phone", bytes(pii["phone"])) == "+8613919176120"
    assert json.loads(rt.vault.decrypt(sid, "custom_traits", bytes(pii["custom_traits"]))) == {
        "plan": "gold"
    }


def test_replaying_a_batch_adds_nothing(
    client: TestClient, write_key: str, cdp_env: CdpEnv
) -> None:
    batch = _shop_batch()
    assert _post_batch(client, write_key, batch).status_code == 200
    before = dump_tables(cdp_env.runtime)
    assert _post_batch(client, write_key, batch).status_code == 200
    after = dump_tables(cdp_env.runtime)
    assert after == before


@pytest.mark.parametrize("auth", [("wrong-key", ""), None, ("", "x")])
def test_bad_or_missing_write_key_gets_401(
    client: TestClient, write_key: str, auth: tuple[str, str] | None
) -> None:
    response = client.post("/v1/track", json=_msg("track", userId="u", event="E"), auth=auth)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic")
    assert response.json()["error"]["code"] == "unauthenticated"


def test_revoked_key_gets_401(client: TestClient, write_key: str, cdp_env: CdpEnv) -> None:
    ok = client.post("/v1/track", json=_msg("track", userId="u", event="E"), auth=(write_key, ""))
    assert ok.status_code == 200
    revoke_source(runtime=cdp_env.runtime, name="web")
    again = client.post(
        "/v1/track", json=_msg("track", userId="u", event="F"), auth=(write_key, "")
    )
    assert again.status_code == 401


def test_size_limits_give_413(client: TestClient, write_key: str, cdp_env: CdpEnv) -> None:
    big = _msg("track", userId="u", event="E", properties={"blob": "x" * 33_000})
    single = client.post("/v1/track", json=big, auth=(write_key, ""))
    assert single.status_code == 413
    assert single.json()["error"]["code"] == "payload_too_large"
    inside = _post_batch(client, write_key, [big])
    assert inside.status_code == 413
    many = [_msg("track", userId="u", event="E", properties={"p": "y" * 20_000}) for _ in range(30)]
    assert _post_batch(client, write_key, many).status_code == 413
    bomb = gzip.compress(b'{"batch": [' + b" " * 5_000_000 + b"]}")
    response = client.post(
        "/v1/batch", content=bomb, auth=(write_key, ""), headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 413
    assert count(cdp_env.runtime, "events") == 0


def test_invalid_messages_get_400_with_reasons_and_the_rest_is_stored(
    client: TestClient, write_key: str, cdp_env: CdpEnv
) -> None:
    batch = [
        _msg("track", userId="u-1", event="Fine"),
        _msg("track", userId="u-1"),  # no event name
        _msg("track", event="Nobody"),  # no identifier
        _msg("identify", userId="u-2", traits={"email": "secret-not-an-email"}),
        _msg("track", userId="u-3", event="Order Completed",
             properties={"order_id": "X", "total": -3, "currency": "USD"}),
    ]  # fmt: skip
    response = _post_batch(client, write_key, batch)
    assert response.status_code == 400
    body = response.json()["error"]
    assert body["code"] == "invalid_messages"
    locs = [d["loc"] for d in body["details"]]
    assert locs == [
        "batch.1.event",
        "batch.2.userId",
        "batch.3.traits.email",
        "batch.4.properties.total",
    ]
    assert "secret-not-an-email" not in response.text
    assert count(cdp_env.runtime, "events") == 2  # Fine, and the Order Completed without its order
    assert count(cdp_env.runtime, "orders") == 0


def _consent(env: CdpEnv, sid: str) -> list[tuple[str, str, str]]:
    with env.runtime.data_engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.exec_driver_sql(
                "SELECT purpose, status, mechanism FROM consent_events "
                f"WHERE subject_id = '{sid}' ORDER BY id"
            ).all()
        ]


def test_category_preferences_become_consent_only_on_change(
    client: TestClient, write_key: str, cdp_env: CdpEnv
) -> None:
    prefs = {"categoryPreferences": {"Advertising": True, "Analytics": False, "Unknown": True}}
    for event in ("A", "B"):
        msg = _msg("track", userId="u-9", event=event, context={"consent": prefs})
        assert _post_batch(client, write_key, [msg]).status_code == 200
    sid = _subject(cdp_env, IdentityKind.CUSTOMER_ID, "u-9")
    assert sid is not None
    assert sorted(_consent(cdp_env, sid)) == [
        ("ad_audiences", "granted", "sdk"),
        ("analytics", "withdrawn", "sdk"),
    ]


def test_gpc_withdraws_ad_audiences_first_and_overrides_the_banner(
    client: TestClient, write_key: str, cdp_env: CdpEnv
) -> None:
    prefs = {"categoryPreferences": {"advertising": True, "personalization": True}}
    msg = _msg("track", userId="u-7", event="A", context={"consent": prefs})
    assert _post_batch(client, write_key, [msg], **{"Sec-GPC": "1"}).status_code == 200
    sid = _subject(cdp_env, IdentityKind.CUSTOMER_ID, "u-7")
    assert sid is not None
    assert _consent(cdp_env, sid) == [
        ("ad_audiences", "withdrawn", "gpc"),
        ("personalization", "granted", "sdk"),
    ]


def test_alias_links_an_anonymous_visitor_to_the_customer(
    client: TestClient, write_key: str, cdp_env: CdpEnv
) -> None:
    assert (
        _post_batch(
            client, write_key, [_msg("page", anonymousId="anon-5", name="Home")]
        ).status_code
        == 200
    )
    assert (
        _post_batch(
            client,
            write_key,
            [_msg("identify", userId="u-5", traits={"email": "five@example.com"})],
        ).status_code
        == 200
    )
    assert count(cdp_env.runtime, "subjects") == 2
    response = client.post(
        "/v1/alias", json=_msg("alias", previousId="anon-5", userId="u-5"), auth=(write_key, "")
    )
    assert response.status_code == 200, response.text
    sid = _subject(cdp_env, IdentityKind.CUSTOMER_ID, "u-5")
    assert _subject(cdp_env, IdentityKind.ANONYMOUS_ID, "anon-5") == sid
    assert count(cdp_env.runtime, "subjects") == 1
    assert count(cdp_env.runtime, "events", f"WHERE subject_id = '{sid}'") == 1  # fmt: skip


def test_concurrent_requests_share_a_transaction_and_keep_their_own_outcomes(
    cdp_env: CdpEnv,
) -> None:
    """Requests queued behind a leader are written together; each gets its own counts, and one
    request's failure is retried alone so it fails only itself."""
    runtime = cdp_env.runtime
    committer = GroupCommitter()
    entered, release = Event(), Event()
    ran: list[str] = []

    def blocking(ctx: BatchContext, _items: Any) -> Outcome:
        entered.set()
        release.wait(10)
        return Outcome(inserted=1)

    def named(n: int, fail: bool = False) -> Any:
        def write(ctx: BatchContext, _items: Any) -> Outcome:
            ran.append(ctx.source)
            if fail:
                raise RuntimeError("this request's own failure")
            ctx.conn.execute(sa.text("SELECT 1"))
            return Outcome(inserted=n)

        return write

    results: dict[str, Any] = {}

    def submit(name: str, writer: Any) -> None:
        try:
            results[name] = committer.submit(
                runtime=runtime, writer=writer, source=name, clock=lambda: datetime.now(UTC)
            ).inserted
        except RuntimeError as exc:
            results[name] = str(exc)

    leader = Thread(target=submit, args=("r0", blocking))
    leader.start()
    assert entered.wait(10)
    followers = [
        Thread(target=submit, args=(f"r{n}", named(n, fail=(n == 3)))) for n in range(1, 5)
    ]
    for t in followers:
        t.start()
    while len(committer._queue) < 4:  # all four queued behind the leader's transaction
        Event().wait(0.01)
    release.set()
    for t in [leader, *followers]:
        t.join(10)
    assert results == {"r0": 1, "r1": 1, "r2": 2, "r3": "this request's own failure", "r4": 4}
    # the four ran in one shared transaction first (rolled back by r3), then one by one
    assert sorted(set(ran)) == ["r1", "r2", "r3", "r4"]
    assert len(ran) > 4

    # and through the service: concurrent batches all land, replays stay duplicates
    create_source(runtime=runtime, name="app")
    source = "app"
    batches = [
        [_msg("track", userId=f"u-{i}", event="Clicked", properties={"n": j}) for j in range(5)]
        for i in range(6)
    ]
    threads = [
        Thread(target=ingest_messages, kwargs={"runtime": runtime, "source_name": source,
                                               "messages": b})
        for b in batches
    ]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert count(runtime, "events") == 30
    again = [ingest_messages(runtime=runtime, source_name=source, messages=b) for b in batches]
    assert all(r.outcome.duplicates == 5 and r.outcome.inserted == 0 for r in again)
    assert count(runtime, "events") == 30


def test_lone_surrogate_escape_is_answered_not_a_server_error(
    client: TestClient, write_key: str
) -> None:
    """JSON allows an unpaired surrogate escape; sizing and storing it must not fail."""
    message = (
        b'{"type": "track", "userId": "u1", "event": "E\\ud800", "messageId": "m-sur",'
        b' "timestamp": "2026-03-01T10:00:00Z", "properties": {"note": "\\udc00"}}'
    )
    for path, body in (("/v1/batch", b'{"batch": [' + message + b"]}"), ("/v1/track", message)):
        r = client.post(
            path, content=body, auth=(write_key, ""), headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 400, r.status_code  # the event name is not a valid string
        assert "Traceback" not in r.text


def test_lone_surrogate_in_properties_is_stored_escaped(client: TestClient, write_key: str) -> None:
    message = (
        b'{"type": "track", "userId": "u1", "event": "E", "messageId": "m-sur2",'
        b' "timestamp": "2026-03-01T10:00:00Z", "properties": {"note": "\\udc00"}}'
    )
    r = client.post(
        "/v1/track",
        content=message,
        auth=(write_key, ""),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.status_code


def test_write_contention_is_a_retryable_503_that_says_so(
    client: TestClient, write_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def contended(*_a: Any, **_k: Any) -> Any:
        raise WriteContentionError(
            "concurrent writers kept taking the same identities or ids; nothing of "
            "this write was stored, send it again"
        )

    monkeypatch.setattr(segment_api, "ingest_messages", contended)
    response = _post_batch(client, write_key, _shop_batch())
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    error = response.json()["error"]
    assert error["code"] == "write_contention" and "send it again" in error["message"]
