"""A Segment ``alias``'s ``previousId`` is the person's previous ``userId`` or ``anonymousId``
(Segment's spec): it is read as a customer id when a stored subject holds it as one (or it is an
erased customer id), or when a message of the same request carries it as ``userId``; else as an
anonymous id. It used to be read as an anonymous id always, so renaming a shop account linked
nothing: the old account and the new id stayed two people."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from cdp.crypto.normalize import IdentityKind
from cdp.ingest.pipeline import ingest_file
from cdp.privacy.erasure import erase_subject
from tests.api.test_segment_api import _post_batch, _subject
from tests.conftest import CdpEnv
from tests.ingest.helpers import count, write_csv

CID, ANON = IdentityKind.CUSTOMER_ID, IdentityKind.ANONYMOUS_ID


def _m(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "messageId": str(uuid.uuid4()), **fields}


def _ok(client: TestClient, key: str, *messages: dict[str, Any]) -> None:
    response = _post_batch(client, key, list(messages))
    assert response.status_code == 200, response.text


def test_a_previous_user_id_links_the_new_one_to_its_subject(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    _ok(client, key, _m("identify", userId="old-1", traits={"email": "one@example.com"}))
    old = _subject(cdp_env, CID, "old-1")
    assert old is not None
    _ok(client, key, _m("alias", previousId="old-1", userId="new-1"))
    assert _subject(cdp_env, CID, "new-1") == old
    assert _subject(cdp_env, ANON, "old-1") is None  # not read as a device id
    assert count(cdp_env.runtime, "subjects") == 1


def test_an_alias_of_two_known_accounts_merges_them(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    _ok(client, key, _m("identify", userId="old-2", traits={"email": "two@example.com"}))
    _ok(client, key, _m("identify", userId="new-2", traits={"firstName": "Two"}))
    assert count(cdp_env.runtime, "subjects") == 2
    _ok(client, key, _m("alias", previousId="old-2", userId="new-2"))
    assert count(cdp_env.runtime, "subjects") == 1
    assert _subject(cdp_env, CID, "old-2") == _subject(cdp_env, CID, "new-2") is not None


def test_a_user_id_of_the_same_request_is_a_customer_id(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    _ok(
        client,
        key,
        _m("track", userId="old-3", event="Viewed"),
        _m("alias", previousId="old-3", userId="new-3"),
        _m("alias", previousId="new-3", userId="newer-3"),
    )
    sid = _subject(cdp_env, CID, "old-3")
    assert sid is not None
    assert _subject(cdp_env, CID, "new-3") == _subject(cdp_env, CID, "newer-3") == sid
    assert _subject(cdp_env, ANON, "old-3") is None
    assert _subject(cdp_env, ANON, "new-3") is None
    assert count(cdp_env.runtime, "subjects") == 1


def test_an_unknown_previous_id_is_an_anonymous_id(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    _ok(client, key, _m("alias", previousId="dev-4", userId="u-4"))
    sid = _subject(cdp_env, CID, "u-4")
    assert sid is not None and _subject(cdp_env, ANON, "dev-4") == sid


def test_a_customer_id_wins_over_an_anonymous_id_of_the_same_text(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    _ok(client, key, _m("page", anonymousId="same-5", name="Home"))
    _ok(client, key, _m("identify", userId="same-5", traits={"email": "five@example.com"}))
    visitor, account = _subject(cdp_env, ANON, "same-5"), _subject(cdp_env, CID, "same-5")
    assert visitor is not None and account is not None and visitor != account
    _ok(client, key, _m("alias", previousId="same-5", userId="u-5"))
    assert _subject(cdp_env, CID, "u-5") == account
    assert _subject(cdp_env, ANON, "same-5") == visitor
    assert count(cdp_env.runtime, "subjects") == 2


def test_an_erased_previous_user_id_links_nothing(
    client: TestClient, key: str, cdp_env: CdpEnv, tmp_path: Path
) -> None:
    rt = cdp_env.runtime
    path = write_csv(tmp_path / "c.csv", [{"customer_id": "gone-6"}], ["customer_id"])
    ingest_file(runtime=rt, kind="customers", path=path)
    sid = _subject(cdp_env, CID, "gone-6")
    assert sid is not None
    erase_subject(runtime=rt, subject_id=sid)
    identities = count(rt, "identities")
    _ok(client, key, _m("alias", previousId="gone-6", userId="u-6"))
    assert _subject(cdp_env, ANON, "gone-6") is None
    assert _subject(cdp_env, CID, "u-6") is None
    assert count(rt, "identities") == identities
