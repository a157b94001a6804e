"""Segment ids: every message's ``userId``, ``anonymousId`` and ``previousId`` is held to the
identifier rules, a ``group`` message's too (with ``Sec-GPC: 1`` a bad one used to be a 500 that
lost the request's valid messages); numbers become ids as Segment's libraries write them, and NaN
or an infinity is refused (as "nan" or "inf" it joined unrelated visitors into one subject)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp.crypto.normalize import IdentityKind
from cdp.ingest.segment_messages import number_id
from tests.api.test_segment_api import _consent, _subject
from tests.conftest import CdpEnv
from tests.ingest.helpers import count


def _post(client: TestClient, key: str, path: str, body: Any, **headers: str) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(
        path,
        content=raw,
        auth=(key, ""),
        headers={"Content-Type": "application/json", **headers},
    )


GPC = {"Sec-GPC": "1"}


@pytest.mark.parametrize(
    ("message", "loc"),
    [
        ({"userId": "=x", "groupId": "g"}, "userId"),
        ({"userId": "u\u0007x", "groupId": "g"}, "userId"),
        ({"userId": "-1", "groupId": "g"}, "userId"),
        ({"anonymousId": "@a", "groupId": "g"}, "anonymousId"),
    ],
)
def test_a_group_with_a_bad_id_under_gpc_is_a_400_detail(
    client: TestClient, key: str, cdp_env: CdpEnv, message: dict[str, Any], loc: str
) -> None:
    response = _post(client, key, "/v1/group", message, **GPC)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_messages"
    assert [d["loc"] for d in error["details"]] == [f"batch.0.{loc}"]
    assert count(cdp_env.runtime, "consent_events") == 0


def test_the_valid_messages_of_a_gpc_batch_with_a_bad_group_are_stored(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    batch = {
        "batch": [
            {"type": "track", "userId": "gpc-good", "event": "Good", "messageId": "gpc-good-1"},
            {"type": "group", "userId": "-1", "groupId": "g"},
            {"type": "group", "userId": "gpc-group", "groupId": "g"},
        ]
    }
    response = _post(client, key, "/v1/batch", batch, **GPC)
    assert response.status_code == 400, response.text
    assert [d["loc"] for d in response.json()["error"]["details"]] == ["batch.1.userId"]
    assert count(cdp_env.runtime, "events") == 1
    for user in ("gpc-good", "gpc-group"):
        sid = _subject(cdp_env, IdentityKind.CUSTOMER_ID, user)
        assert sid is not None
        assert _consent(cdp_env, sid) == [("ad_audiences", "withdrawn", "gpc")]


def test_a_bad_id_is_named_by_its_segment_field(client: TestClient, key: str) -> None:
    response = _post(client, key, "/v1/track", {"userId": "=x", "event": "E"})
    assert response.status_code == 400
    assert [d["loc"] for d in response.json()["error"]["details"]] == ["batch.0.userId"]


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
@pytest.mark.parametrize("field", ["userId", "anonymousId"])
def test_a_non_finite_number_is_not_an_id(
    client: TestClient, key: str, cdp_env: CdpEnv, number: bytes, field: str
) -> None:
    other = "anonymousId" if field == "userId" else "userId"
    batch = b",".join(
        b'{"type":"track","event":"E","%s":%s,"%s":"v-%d"}'
        % (field.encode(), number, other.encode(), n)
        for n in (1, 2)
    )
    response = _post(client, key, "/v1/batch", b'{"batch":[' + batch + b"]}")
    assert response.status_code == 400, response.text
    details = response.json()["error"]["details"]
    assert [d["loc"] for d in details] == [f"batch.0.{field}", f"batch.1.{field}"]
    assert {d["msg"] for d in details} == {"Value error, must be a finite number"}
    assert count(cdp_env.runtime, "subjects") == 0


def test_numbers_are_ids_as_segment_libraries_write_them(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    body = (
        b'{"batch":['
        b'{"type":"track","event":"E","userId":42,"anonymousId":"n-1"},'
        b'{"type":"track","event":"E","userId":42.0,"anonymousId":"n-2"},'
        b'{"type":"track","event":"E","userId":4.5,"anonymousId":"n-3"}]}'
    )
    assert _post(client, key, "/v1/batch", body).status_code == 200
    sid = _subject(cdp_env, IdentityKind.CUSTOMER_ID, "42")
    assert sid is not None
    assert _subject(cdp_env, IdentityKind.ANONYMOUS_ID, "n-2") == sid
    assert _subject(cdp_env, IdentityKind.CUSTOMER_ID, "4.5") is not None
    assert _subject(cdp_env, IdentityKind.CUSTOMER_ID, "42.0") is None


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.floats())
def test_a_number_id_is_finite_digits_or_refused(value: float) -> None:
    try:
        out = number_id(value)
    except ValueError:
        assert value != value or value in (float("inf"), float("-inf"))
        return
    assert out not in ("nan", "inf", "-inf")
    assert float(out) == value
    if value.is_integer() and abs(value) < 1e21:
        assert out == str(int(value))


@given(st.integers(min_value=-(10**30), max_value=10**30))
def test_an_integral_float_and_its_integer_are_one_id(value: int) -> None:
    if abs(value) < 2**53:
        assert number_id(float(value)) == number_id(value) == str(value)


def test_group_without_gpc_still_answers_200(client: TestClient, key: str) -> None:
    message = {"userId": f"g-{uuid.uuid4().hex[:6]}", "groupId": "g"}
    assert _post(client, key, "/v1/group", message).status_code == 200
