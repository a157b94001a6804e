"""An identify's ``name`` trait only fills the ``firstName`` / ``lastName`` it does not carry:
explicit ones win. ``name`` used to overwrite an explicit ``lastName`` whenever ``firstName`` was
absent."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from cdp.crypto.normalize import IdentityKind
from cdp.ingest.segment_messages import SegmentMessage
from cdp.ingest.segment_models import customer_data
from tests.api.test_segment_api import _post_batch, _subject
from tests.conftest import CdpEnv
from tests.factories import read_pii


def _names(traits: dict[str, Any]) -> tuple[Any, Any]:
    msg = SegmentMessage.model_validate({"type": "identify", "userId": "n", "traits": traits})
    data = customer_data(msg)
    return data.get("first_name"), data.get("last_name")


@pytest.mark.parametrize(
    ("traits", "expected"),
    [
        ({"lastName": "Li", "name": "Na Wang"}, ("Na", "Li")),
        ({"firstName": "Nana", "name": "Na Li"}, ("Nana", "Li")),
        ({"firstName": "A", "lastName": "B", "name": "C D"}, ("A", "B")),
        ({"first_name": "A", "last_name": "B", "name": "C D"}, ("A", "B")),
        ({"name": "Na Li"}, ("Na", "Li")),
        ({"name": "Na"}, ("Na", None)),
        ({"firstName": None, "name": "Na Li"}, ("Na", "Li")),
        ({"lastName": "Li", "name": "  "}, (None, "Li")),
    ],
)
def test_name_fills_only_what_is_missing(traits: dict[str, Any], expected: tuple[Any, Any]) -> None:
    assert _names(traits) == expected


_word = st.text(st.characters(categories=["L"]), min_size=1, max_size=8)


@given(first=st.none() | _word, last=st.none() | _word, name=st.lists(_word, max_size=3))
def test_explicit_names_always_win(first: str | None, last: str | None, name: list[str]) -> None:
    traits: dict[str, Any] = {"name": " ".join(name)}
    if first is not None:
        traits["firstName"] = first
    if last is not None:
        traits["lastName"] = last
    got_first, got_last = _names(traits)
    if first is not None:
        assert got_first == first
    if last is not None:
        assert got_last == last
    if first is None and name:
        assert got_first == name[0]
    if last is None and len(name) > 1:
        assert got_last == " ".join(name[1:])


def test_an_identify_keeps_its_explicit_last_name(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    msg = {
        "type": "identify",
        "messageId": str(uuid.uuid4()),
        "userId": "n-1",
        "traits": {"lastName": "Li", "name": "Na Wang"},
    }
    assert _post_batch(client, key, [msg]).status_code == 200
    sid = _subject(cdp_env, IdentityKind.CUSTOMER_ID, "n-1")
    assert sid is not None
    pii = read_pii(cdp_env.runtime, sid)
    vault = cdp_env.runtime.vault
    assert vault.decrypt(sid, "first_name", bytes(pii["first_name"])) == "Na"
    assert vault.decrypt(sid, "last_name", bytes(pii["last_name"])) == "Li"
