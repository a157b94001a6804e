"""An identify's ``birthday`` trait sent as a date-time (analytics.js sends a JavaScript ``Date``
as ``toISOString()``, e.g. ``1990-05-11T22:00:00.000Z`` for the 12th picked at midnight in UTC+2)
is read as the date whose midnight in UTC is nearest to it; text that is no date stays refused.
Such an identify used to be refused whole (400)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
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


def _identify(user: str, birthday: Any) -> dict[str, Any]:
    return {
        "type": "identify",
        "messageId": str(uuid.uuid4()),
        "userId": user,
        "traits": {"birthday": birthday},
    }


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("1990-05-11T22:00:00.000Z", "1990-05-12"),  # midnight in UTC+2
        ("1990-05-11T16:00:00.000Z", "1990-05-12"),  # midnight in UTC+8
        ("1990-05-12T05:00:00.000Z", "1990-05-12"),  # midnight in UTC-5
        ("1990-05-12T00:00:00.000Z", "1990-05-12"),  # new Date("1990-05-12")
        ("1990-05-12T00:00:00+08:00", "1990-05-12"),
        ("1990-05-12", "1990-05-12"),
    ],
)
def test_a_date_time_birthday_is_stored_as_its_date(
    client: TestClient, key: str, cdp_env: CdpEnv, sent: str, stored: str
) -> None:
    response = _post_batch(client, key, [_identify("b-1", sent)])
    assert response.status_code == 200, response.text
    sid = _subject(cdp_env, IdentityKind.CUSTOMER_ID, "b-1")
    assert sid is not None
    pii = read_pii(cdp_env.runtime, sid)
    assert cdp_env.runtime.vault.decrypt(sid, "birthday", bytes(pii["birthday"])) == stored


@pytest.mark.parametrize(
    "sent",
    [
        "someday",
        "1990-13-45T00:00:00Z",
        "1990-05-12Tnoon",
        "19900512",
        "1850-01-01T00:00:00Z",
        "9999-12-31T23:00:00Z",
        "0001-01-01T00:00:00+01:00",  # before the calendar's start in UTC: was a 500
        "9999-12-31T23:00:00-05:00",  # after its end in UTC: was a 500
        631152000,
    ],
)
def test_a_birthday_that_is_no_date_is_refused(
    client: TestClient, key: str, cdp_env: CdpEnv, sent: Any
) -> None:
    response = _post_batch(client, key, [_identify("b-2", sent)])
    assert response.status_code == 400, response.text
    assert [d["loc"] for d in response.json()["error"]["details"]] == ["batch.0.traits.birthday"]
    assert str(sent) not in response.text


@given(
    day=st.dates(min_value=date(1900, 1, 2), max_value=date(2098, 12, 30)),
    offset_minutes=st.integers(min_value=-11 * 60, max_value=12 * 60),
    millis=st.booleans(),
)
def test_a_js_date_made_at_local_midnight_gives_the_picked_day(
    day: date, offset_minutes: int, millis: bool
) -> None:
    """``new Date(y, m, d)`` in any zone from UTC-11 to UTC+12, as ``toISOString()`` sends it."""
    local = datetime.combine(day, time(), timezone(timedelta(minutes=offset_minutes)))
    sent = local.astimezone(UTC).isoformat(timespec="milliseconds" if millis else "seconds")
    msg = SegmentMessage.model_validate(_identify("b-3", sent.replace("+00:00", "Z")))
    assert customer_data(msg)["birthday"] == day.isoformat()
