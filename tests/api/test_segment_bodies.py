"""Segment request bodies: a gzip body must be whole (a body cut before its CRC and length, or
followed by data that is not another gzip member, used to be accepted, its CRC never checked), and
the 400 of an invalid batch lists at most 100 problems (250,000 one-byte messages used to give a
17.6 MB answer)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp.api.segment import MAX_DETAILS
from tests.conftest import CdpEnv
from tests.ingest.helpers import count


def _batch(*events: str) -> bytes:
    return json.dumps(
        {"batch": [{"type": "track", "userId": "u-1", "event": e, "messageId": e} for e in events]}
    ).encode()


def _post_gzip(client: TestClient, key: str, body: Any) -> Any:
    return client.post(
        "/v1/batch",
        content=body,
        auth=(key, ""),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )


BODY = _batch("E1", "E2")
WHOLE = gzip.compress(BODY)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        pytest.param(WHOLE[:-6], "cut short", id="no-trailer"),
        pytest.param(WHOLE[:-1], "cut short", id="trailer-cut"),
        pytest.param(WHOLE[:10], "cut short", id="header-only"),
        pytest.param(b"", "cut short", id="empty"),
        pytest.param(WHOLE + b"trailing garbage", "not gzip", id="trailing-garbage"),
        pytest.param(WHOLE + b"\x00" * 8, "not gzip", id="trailing-zeros"),
        pytest.param(WHOLE[:-8] + b"\x00" * 4 + WHOLE[-4:], "damaged", id="wrong-crc"),
        pytest.param(WHOLE[:-4] + b"\x00" * 4, "damaged", id="wrong-length"),
        pytest.param(WHOLE + gzip.compress(b"x")[:-3], "cut short", id="second-member-cut"),
    ],
)
def test_a_gzip_body_that_is_not_whole_is_a_400(
    client: TestClient, key: str, cdp_env: CdpEnv, body: bytes, why: str
) -> None:
    response = _post_gzip(client, key, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["message"].startswith("the body is not valid gzip")
    assert why in error["message"]
    assert count(cdp_env.runtime, "events") == 0


def test_a_body_of_two_gzip_members_is_read_whole(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    body = gzip.compress(BODY[:20]) + gzip.compress(BODY[20:])
    assert _post_gzip(client, key, body).status_code == 200
    assert count(cdp_env.runtime, "events") == 2


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=40))
def test_a_gzip_body_is_read_the_same_in_any_chunks(
    client: TestClient, key: str, sizes: list[int]
) -> None:
    """Chunk boundaries anywhere (inside the header, the data, the trailer, between members)."""
    body = gzip.compress(BODY[:30]) + gzip.compress(BODY[30:])

    def chunks(data: bytes) -> Iterator[bytes]:
        at = 0
        for size in sizes:
            yield data[at : at + size]
            at += size
        if at < len(data):
            yield data[at:]

    assert _post_gzip(client, key, chunks(body)).status_code == 200
    cut = _post_gzip(client, key, chunks(body[:-2]))
    assert cut.status_code == 400
    assert "cut short" in cut.json()["error"]["message"]
    junk = _post_gzip(client, key, chunks(body + b"junk"))
    assert junk.status_code == 400
    assert "not gzip" in junk.json()["error"]["message"]


def test_a_gzip_body_of_many_members_stops_at_the_limit(client: TestClient, key: str) -> None:
    member = gzip.compress(b" " * 100_000)
    response = _post_gzip(client, key, member * 20)  # 2 MB inflated from a few KB
    assert response.status_code == 413


def test_the_details_of_a_huge_invalid_batch_are_capped(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    n = 250_000
    body = (
        b'{"batch":['
        + b",".join([b"1"] * (n - 1))
        + b',{"type":"track","userId":"u","event":"E"}]}'
    )
    response = client.post("/v1/batch", content=body, auth=(key, ""))
    assert response.status_code == 400
    assert len(response.content) < 20_000
    error = response.json()["error"]
    assert len(error["details"]) == MAX_DETAILS == 100
    assert error["details"][0] == {
        "loc": "batch.0.message",
        "msg": "a message must be a JSON object",
    }
    assert error["details"][-1]["loc"] == "batch.99.message"
    assert error["message"] == (
        f"{n - 1} of {n} messages are invalid; the others were accepted "
        f"(the first {MAX_DETAILS} of {n - 1} problems are listed)"
    )
    assert count(cdp_env.runtime, "events") == 1


def test_a_few_problems_are_all_listed(client: TestClient, key: str) -> None:
    body = json.dumps({"batch": [1, {"type": "track", "userId": "u"}]}).encode()
    error = client.post("/v1/batch", content=body, auth=(key, "")).json()["error"]
    assert error["message"] == "2 of 2 messages are invalid; the others were accepted"
    assert [d["loc"] for d in error["details"]] == ["batch.0.message", "batch.1.event"]
