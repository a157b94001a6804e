"""analytics.js, unchanged, in a browser on the shop's pages: it posts each message to the type's
first letter (``/v1/t`` for a track, ``/v1/b`` for a batch) as ``text/plain`` with the write key in
the body, from another origin, and counts an event as delivered only when the browser lets it read
the answer. These paths answered 404 and no answer was readable, so a page's events were retried
and never arrived. The permissioned API stays closed to other origins."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cdp.crypto.normalize import IdentityKind
from tests.api.test_segment_api import _subject
from tests.conftest import CdpEnv
from tests.ingest.helpers import count

SHOP = "https://shop.example"


def _post(client: TestClient, path: str, body: dict[str, Any]) -> Any:
    return client.post(
        path,
        content=json.dumps(body).encode(),
        headers={"Content-Type": "text/plain", "Origin": SHOP},
    )


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/v1/t", {"type": "track", "event": "Product Viewed"}),
        ("/v1/p", {"type": "page", "name": "Home"}),
        ("/v1/s", {"type": "screen", "name": "Home"}),
        ("/v1/i", {"type": "identify", "traits": {"firstName": "Ana"}}),
        ("/v1/g", {"type": "group", "groupId": "g-1"}),
    ],
)
def test_the_one_letter_paths_take_their_message_and_answer_any_origin(
    client: TestClient, key: str, cdp_env: CdpEnv, path: str, message: dict[str, Any]
) -> None:
    user = "u-" + uuid.uuid4().hex[:8]
    body = {**message, "userId": user, "messageId": str(uuid.uuid4()), "writeKey": key}
    response = _post(client, path, body)
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == "*"
    if message["type"] != "group":  # accepted, not stored (docs/ingestion.md)
        assert _subject(cdp_env, IdentityKind.CUSTOMER_ID, user) is not None


def test_an_alias_and_a_batch_reach_their_routes(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    anon = "a-" + uuid.uuid4().hex[:8]
    track = {"type": "track", "event": "Viewed", "anonymousId": anon, "messageId": "m-1"}
    batch = {"batch": [track], "writeKey": key, "sentAt": "2026-03-01T10:00:00Z"}
    assert _post(client, "/v1/b", batch).status_code == 200
    assert count(cdp_env.runtime, "events") == 1
    alias = {"type": "alias", "previousId": anon, "userId": "u-alias", "writeKey": key}
    assert _post(client, "/v1/a", alias).status_code == 200
    assert _subject(cdp_env, IdentityKind.CUSTOMER_ID, "u-alias") == _subject(
        cdp_env, IdentityKind.ANONYMOUS_ID, anon
    )


def test_a_bad_key_is_401_and_still_readable(client: TestClient, key: str) -> None:
    response = _post(client, "/v1/t", {"type": "track", "event": "x", "writeKey": "nope"})
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == "*"


def test_a_preflight_to_an_ingestion_route_is_answered(client: TestClient) -> None:
    """A sender with an Authorization header or a JSON content type makes the browser ask first."""
    response = client.options(
        "/v1/track",
        headers={
            "Origin": SHOP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed


@pytest.mark.parametrize("path", ["/v1/profiles/00000000000000000000000000000000", "/v1/segments"])
def test_the_permissioned_api_sends_no_cors_headers(client: TestClient, path: str) -> None:
    read = client.get(path, headers={"Origin": SHOP, "Authorization": "Bearer x"})
    assert "access-control-allow-origin" not in read.headers
    preflight = client.options(
        path, headers={"Origin": SHOP, "Access-Control-Request-Method": "GET"}
    )
    assert preflight.status_code != 204
    assert "access-control-allow-origin" not in preflight.headers


def test_the_one_letter_paths_are_not_in_the_api_document(client: TestClient) -> None:
    paths = set(client.get("/openapi.json").json()["paths"])
    assert "/v1/track" in paths and "/v1/batch" in paths
    assert not paths & {f"/v1/{c}" for c in "itpsagb"}


def test_a_single_message_is_read_no_further_than_its_own_limit_before_its_key(
    client: TestClient,
) -> None:
    """Without an Authorization header the body is read to find the key: for a single-message
    route no further than 32 KB (it was read up to the batch's 500 KB, then answered 401)."""
    big = {"type": "track", "event": "x", "properties": {"pad": "x" * 100_000}}
    response = _post(client, "/v1/t", big)
    assert response.status_code == 413
    assert response.headers["access-control-allow-origin"] == "*"
