"""Segment messages past every retention window: a track, page or screen whose time (as stored:
its device time corrected by ``sentAt``) is older than the longest window of the purposes that
retain events (730 days) is answered ``200 {"success": true}`` like an accepted message and its
event is not stored; an ``Order Completed`` older than the support window (1095 days) stores its
order without the personal link. Before, both were stored until the next retention run."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from cdp.clock import FrozenClock
from cdp.ingest.segment import ingest_messages
from tests.conftest import CdpEnv
from tests.ingest.helpers import count

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
WINDOW = timedelta(days=730)


def _msg(kind: str, at: datetime, user: str = "u-1", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": kind,
        "userId": user,
        "messageId": str(uuid.uuid4()),
        "timestamp": at.isoformat(),
        **fields,
    }
    if kind == "track":
        body.setdefault("event", "Viewed")
    return body


def _events(env: CdpEnv) -> list[str]:
    with env.runtime.data_engine.connect() as conn:
        return sorted(conn.exec_driver_sql("SELECT name FROM events").scalars())


def test_the_window_is_judged_on_the_event_time_by_the_clock(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    messages = [
        _msg("track", NOW - WINDOW - timedelta(seconds=1), event="late"),
        _msg("track", NOW - WINDOW, event="edge"),  # the window's first instant: kept
        _msg("page", NOW - timedelta(days=800), name="old page"),
        _msg("screen", NOW - timedelta(days=800), name="old screen"),
        # a device clock three years behind: corrected by sentAt, the event is recent
        _msg("track", NOW - timedelta(days=1096), event="skewed",
             sentAt=(NOW - timedelta(days=1096) + timedelta(minutes=1)).isoformat()),
        # an anonymous visitor's old event creates nobody
        _msg("track", NOW - timedelta(days=900), user="", anonymousId="dev-9", event="ghost"),
    ]  # fmt: skip
    messages[-1].pop("userId")
    result = ingest_messages(
        runtime=rt, source_name="web", messages=messages, clock=FrozenClock(NOW)
    )
    assert result.invalid == []
    assert (result.outcome.inserted, result.outcome.expired) == (2, 4)
    assert _events(cdp_env) == ["edge", "skewed"]
    assert count(rt, "subjects") == 1
    assert count(rt, "identities") == 1


def test_an_old_order_completed_keeps_its_order_anonymous_and_drops_its_event(
    cdp_env: CdpEnv,
) -> None:
    rt = cdp_env.runtime
    order = _msg(
        "track",
        NOW - timedelta(days=1200),
        user="buyer",
        event="Order Completed",
        properties={"order_id": "W-1", "total": 12, "currency": "USD"},
    )
    clock = FrozenClock(NOW)
    result = ingest_messages(runtime=rt, source_name="web", messages=[order], clock=clock)
    assert result.invalid == []
    assert result.outcome.expired == 2  # the event, not stored; the order, stored unlinked
    with rt.data_engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT order_ref, subject_id FROM orders").all()
    assert [tuple(r) for r in rows] == [("W-1", None)]
    assert _events(cdp_env) == []
    assert count(rt, "subjects") == 0


def _post(client: TestClient, key: str, path: str, body: dict[str, Any]) -> Any:
    return client.post(
        path,
        content=json.dumps(body).encode(),
        auth=(key, ""),
        headers={"Content-Type": "application/json"},
    )


def _expired_count() -> float:
    labels = {"channel": "http", "kind": "segment", "outcome": "expired"}
    return REGISTRY.get_sample_value("cdp_ingest_records_total", labels) or 0.0


def test_http_answers_success_for_an_expired_message_and_stores_the_rest(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    """Through the real app, on the real clock: 800 days is past the window on any day."""
    now = datetime.now(UTC)
    before = _expired_count()
    old = now - timedelta(days=800)
    batch = {"batch": [_msg("track", old, event="old"), _msg("track", now, event="new")]}
    response = _post(client, key, "/v1/batch", batch)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    for path, message in (
        ("/v1/track", _msg("track", old, event="old track")),
        ("/v1/page", _msg("page", old, name="old page")),
    ):
        response = _post(client, key, path, message)
        assert response.status_code == 200, response.text
        assert response.json() == {"success": True}
    assert _events(cdp_env) == ["new"]
    assert _expired_count() - before == 3
