"""Clock-skew correction with ``sentAt``: a ``/v1/batch``'s own ``sentAt`` applies to its messages
that carry none (Segment's libraries put it on the batch), as a single message's ``sentAt``
does; it used to be ignored, so a device clock days off dated a batch's events days off."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from cdp.db.types import UtcDateTime
from tests.conftest import CdpEnv

SKEW = timedelta(days=2)  # the device's clock runs two days behind
AGO = timedelta(hours=1)  # the event happened an hour before the request


def _post(client: TestClient, key: str, path: str, body: dict[str, Any]) -> Any:
    return client.post(
        path,
        content=json.dumps(body).encode(),
        auth=(key, ""),
        headers={"Content-Type": "application/json"},
    )


def _track(name: str, device_now: datetime, **fields: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "messageId": str(uuid.uuid4()),
        "userId": "s-1",
        "event": name,
        "originalTimestamp": (device_now - AGO).isoformat(),
        **fields,
    }


def _times(env: CdpEnv) -> dict[str, datetime]:
    with env.runtime.data_engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT name, occurred_at FROM events").all()
    read = UtcDateTime().process_result_value
    return {str(n): read(at, None) for n, at in rows}  # type: ignore[misc, arg-type]


def _near(at: datetime, expected: datetime) -> bool:
    return abs(at - expected) < timedelta(minutes=2)


def test_a_batch_sent_at_corrects_its_messages(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    device_now = datetime.now(UTC) - SKEW
    own_sent_at = (device_now + timedelta(minutes=30)).isoformat()  # a message's own wins
    body = {
        "batch": [
            _track("batch", device_now),
            _track("own", device_now, sentAt=own_sent_at),
        ],
        "sentAt": device_now.isoformat(),
    }
    response = _post(client, key, "/v1/batch", body)
    assert response.status_code == 200, response.text
    times = _times(cdp_env)
    now = datetime.now(UTC)
    assert _near(times["batch"], now - AGO), times
    assert _near(times["own"], now - AGO - timedelta(minutes=30)), times
    assert not _near(times["own"], now - AGO), times


def test_a_single_message_and_a_batch_of_it_give_one_time(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    device_now = datetime.now(UTC) - SKEW
    single = _track("single", device_now, sentAt=device_now.isoformat())
    assert _post(client, key, "/v1/track", single).status_code == 200
    body = {"batch": [_track("batched", device_now)], "sentAt": device_now.isoformat()}
    assert _post(client, key, "/v1/batch", body).status_code == 200
    times = _times(cdp_env)
    assert abs(times["single"] - times["batched"]) < timedelta(minutes=1)


def test_an_invalid_batch_sent_at_is_not_applied(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    device_now = datetime.now(UTC) - SKEW
    body = {"batch": [_track("kept", device_now)], "sentAt": "yesterday"}
    response = _post(client, key, "/v1/batch", body)
    assert response.status_code == 200, response.text
    assert _near(_times(cdp_env)["kept"], device_now - AGO)


def test_a_device_timestamp_is_corrected_by_its_sent_at(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    """analytics.js sends the device's ``timestamp`` and ``sentAt``: Segment reads the timestamp
    as ``originalTimestamp`` and corrects it by ``receivedAt - sentAt``; so does cdp."""
    device_now = datetime.now(UTC) - SKEW
    message = {
        "type": "track",
        "userId": "s-2",
        "event": "device",
        "timestamp": (device_now - AGO).isoformat(),
        "sentAt": device_now.isoformat(),
    }
    assert _post(client, key, "/v1/track", message).status_code == 200
    assert _near(_times(cdp_env)["device"], datetime.now(UTC) - AGO), _times(cdp_env)


def test_a_timestamp_beside_an_original_timestamp_is_already_corrected(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    """A message relayed from Segment carries its corrected ``timestamp`` beside the device's
    ``originalTimestamp`` and ``sentAt``: that timestamp is taken as it is."""
    at = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    message = {
        "type": "track",
        "userId": "s-3",
        "event": "relayed",
        "timestamp": at.isoformat(),
        "originalTimestamp": (at - SKEW).isoformat(),
        "sentAt": (at - SKEW + timedelta(seconds=5)).isoformat(),
    }
    assert _post(client, key, "/v1/track", message).status_code == 200
    assert _times(cdp_env)["relayed"] == at
