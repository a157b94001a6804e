"""The second copy of a ``messageId`` within one request is a duplicate, as a replay in a later
request is: an identify or alias is applied once, its first copy. Both copies used to be
applied (the second identify overwrote the first's traits; a second alias linked too)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from cdp.crypto.normalize import IdentityKind
from cdp.ingest.segment import ingest_messages
from tests.api.test_segment_api import _post_batch, _subject
from tests.conftest import CdpEnv
from tests.factories import read_pii
from tests.ingest.helpers import count, dump_tables


def _identify(first: str) -> dict[str, Any]:
    return {"type": "identify", "messageId": "m-1", "userId": "d-1", "traits": {"firstName": first}}


def _first_name(env: CdpEnv, user: str) -> str:
    sid = _subject(env, IdentityKind.CUSTOMER_ID, user)
    assert sid is not None
    pii = read_pii(env.runtime, sid)
    return str(env.runtime.vault.decrypt(sid, "first_name", bytes(pii["first_name"])))


def test_a_second_identify_with_the_same_message_id_is_a_duplicate(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    assert _post_batch(client, key, [_identify("First"), _identify("Second")]).status_code == 200
    assert _first_name(cdp_env, "d-1") == "First"


def test_within_a_request_as_across_requests(client: TestClient, key: str, cdp_env: CdpEnv) -> None:
    """The same two copies sent in two requests store what one request with both stores."""
    assert _post_batch(client, key, [_identify("First")]).status_code == 200
    assert _post_batch(client, key, [_identify("Second")]).status_code == 200
    across = _first_name(cdp_env, "d-1")
    assert across == "First"


def test_the_second_copy_counts_as_a_duplicate(cdp_env: CdpEnv) -> None:
    result = ingest_messages(
        runtime=cdp_env.runtime,
        source_name="web",
        messages=[_identify("First"), _identify("Second")],
    )
    assert not result.invalid
    assert (result.outcome.inserted, result.outcome.duplicates) == (1, 1)


def test_a_second_alias_with_the_same_message_id_links_nothing(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    alias = {"type": "alias", "messageId": "a-1", "userId": "d-2"}
    batch = [{**alias, "previousId": "dev-a"}, {**alias, "previousId": "dev-b"}]
    assert _post_batch(client, key, batch).status_code == 200
    sid = _subject(cdp_env, IdentityKind.CUSTOMER_ID, "d-2")
    assert sid is not None and _subject(cdp_env, IdentityKind.ANONYMOUS_ID, "dev-a") == sid
    assert _subject(cdp_env, IdentityKind.ANONYMOUS_ID, "dev-b") is None
    before = dump_tables(cdp_env.runtime)
    assert _post_batch(client, key, batch).status_code == 200  # a replay adds nothing
    assert dump_tables(cdp_env.runtime) == before
    assert count(cdp_env.runtime, "subjects") == 1
