"""A Segment request may carry its write key in the JSON body (``writeKey``) instead of HTTP Basic
auth, as Segment accepts and analytics.js sends it (a browser posts ``text/plain`` with the key in
the body, no Authorization header). It used to be a 401. The key is not kept with the data."""

from __future__ import annotations

import gzip
import json
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cdp.crypto.normalize import IdentityKind
from cdp.ingest.sources import create_source, revoke_source
from tests.api.test_segment_api import _subject
from tests.conftest import CdpEnv
from tests.ingest.helpers import count, dump_tables


def _track(user: str, **fields: Any) -> dict[str, Any]:
    return {"type": "track", "userId": user, "event": "Viewed", **fields}


def _post(client: TestClient, path: str, body: Any, *, gzipped: bool = False) -> Any:
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "text/plain"}
    if gzipped:
        raw = gzip.compress(raw)
        headers["Content-Encoding"] = "gzip"
    return client.post(path, content=raw, headers=headers)


def test_a_single_message_with_its_write_key_is_accepted(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    response = _post(client, "/v1/track", _track("k-1", writeKey=key))
    assert response.status_code == 200, response.text
    assert _subject(cdp_env, IdentityKind.CUSTOMER_ID, "k-1") is not None


@pytest.mark.parametrize("gzipped", [False, True])
def test_a_batch_with_its_write_key_is_accepted(
    client: TestClient, key: str, cdp_env: CdpEnv, gzipped: bool
) -> None:
    body = {
        "writeKey": key,
        "batch": [_track("k-2", writeKey=key, messageId=str(uuid.uuid4()))],
        "sentAt": "2026-03-01T10:00:00Z",
    }
    response = _post(client, "/v1/batch", body, gzipped=gzipped)
    assert response.status_code == 200, response.text
    assert count(cdp_env.runtime, "events") == 1


@pytest.mark.parametrize("write_key", ["wrong-key", "", None, 42, ["x"]])
def test_a_wrong_or_missing_body_key_is_401(
    client: TestClient, key: str, cdp_env: CdpEnv, write_key: Any
) -> None:
    body = _track("k-3") if write_key is None else _track("k-3", writeKey=write_key)
    response = _post(client, "/v1/track", body)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Basic")
    assert count(cdp_env.runtime, "events") == 0


def test_a_revoked_key_in_the_body_is_401(client: TestClient, cdp_env: CdpEnv) -> None:
    created = create_source(runtime=cdp_env.runtime, name="old")
    revoke_source(runtime=cdp_env.runtime, name="old")
    response = _post(client, "/v1/track", _track("k-4", writeKey=created.write_key))
    assert response.status_code == 401


def test_basic_auth_decides_when_present(client: TestClient, key: str, cdp_env: CdpEnv) -> None:
    body = json.dumps(_track("k-5", writeKey=key)).encode()
    response = client.post("/v1/track", content=body, auth=("wrong-key", ""))
    assert response.status_code == 401


def test_the_write_key_is_not_stored_and_keys_no_message(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    """A message without messageId is keyed by a hash of its content: the same message sent with
    Basic auth or with the key in its body is one message."""
    message = _track("k-6", timestamp="2026-03-01T10:00:00Z")
    assert _post(client, "/v1/track", {**message, "writeKey": key}).status_code == 200
    before = dump_tables(cdp_env.runtime)
    assert client.post("/v1/track", json=message, auth=(key, "")).status_code == 200
    assert dump_tables(cdp_env.runtime) == before
    assert key not in json.dumps(before, default=str)


def test_a_single_message_over_its_limit_is_413_with_a_body_key(
    client: TestClient, key: str
) -> None:
    big = _track("k-7", writeKey=key, properties={"pad": "x" * 40_000})
    assert _post(client, "/v1/track", big).status_code == 413
