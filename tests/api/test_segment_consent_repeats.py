"""The Segment API's change-only consent rule records a repetition of the current state when it
is dated on a later day than the latest entry, so the ledger holds the person's latest choice and
an older opposite entry arriving late (a re-imported shop file) does not override it; at most one
repetition per (subject, purpose, day), and a replayed request adds nothing."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cdp.api.app import create_app
from cdp.clock import FrozenClock
from cdp.consent import ledger_state, service
from cdp.crypto.normalize import IdentityKind
from cdp.ingest.pipeline import ingest_file
from cdp.ingest.segment import ingest_messages
from cdp.ingest.sources import create_source
from cdp.runtime import Runtime
from tests.conftest import CdpEnv
from tests.factories import make_subject
from tests.ingest.helpers import count, dump_tables, write_csv

JAN = datetime(2026, 1, 1, tzinfo=UTC)
FEB = datetime(2026, 2, 1, tzinfo=UTC)
CONSENT_HEADER = ["customer_id", "purpose", "status", "occurred_at", "source"]


@pytest.fixture
def client(cdp_env: CdpEnv) -> Iterator[TestClient]:
    with TestClient(create_app()) as c:
        yield c


@pytest.fixture
def write_key(cdp_env: CdpEnv) -> str:
    return create_source(runtime=cdp_env.runtime, name="shop-web").write_key


def _record(rt: Runtime, sid: str, purpose: str, status: str, at: datetime) -> None:
    service.record_consent(
        runtime=rt, subject_id=sid, purpose=purpose, status=status, occurred_at=at,
        source="crm", mechanism="import", recorded_by="import",
    )  # fmt: skip


def _msg(user: str, prefs: dict[str, bool] | None, at: datetime | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "type": "track",
        "messageId": str(uuid.uuid4()),
        "userId": user,
        "event": "Viewed",
        "timestamp": (at or datetime.now(UTC)).isoformat(),
    }
    if prefs is not None:
        msg["context"] = {"consent": {"categoryPreferences": prefs}}
    return msg


def _post(client: TestClient, key: str, messages: list[dict[str, Any]], *, gpc: bool) -> None:
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    if gpc:
        headers["Sec-GPC"] = "1"
    body = gzip.compress(json.dumps({"batch": messages}).encode())
    r = client.post("/v1/batch", content=body, auth=(key, ""), headers=headers)
    assert r.status_code == 200, r.text


def _late_file(
    rt: Runtime, tmp_path: Path, user: str, purposes: tuple[str, ...], status: str, at: datetime
) -> None:
    """An older consent file arriving late, through the batch connector (``cdp ingest
    consents``)."""
    rows = [
        {"customer_id": user, "purpose": p, "status": status, "occurred_at": at.isoformat(),
         "source": "pos-import"}
        for p in purposes
    ]  # fmt: skip
    path = write_csv(tmp_path / f"late-{uuid.uuid4().hex}.csv", rows, CONSENT_HEADER)
    assert ingest_file(runtime=rt, kind="consents", path=path).inserted == len(purposes)


def _entries(rt: Runtime, sid: str) -> list[tuple[str, str, str]]:
    return [
        (h.purpose, h.status, h.mechanism) for h in ledger_state.history(runtime=rt, subject_id=sid)
    ]


@pytest.mark.parametrize("late", ["service", "file"])
def test_a_repeated_withdrawal_outlives_a_late_older_grant(
    cdp_env: CdpEnv, client: TestClient, write_key: str, tmp_path: Path, late: str
) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt, identities={IdentityKind.CUSTOMER_ID: "u-1"})
    purposes = ("email_marketing", "ad_audiences")
    for p in purposes:
        _record(rt, sid, p, "withdrawn", JAN)
    # today the visitor says "no email" in the banner, and their browser sends Sec-GPC: 1
    _post(client, write_key, [_msg("u-1", {"email": False, "advertising": False})], gpc=True)
    assert _entries(rt, sid)[-2:] in (
        [("ad_audiences", "withdrawn", "gpc"), ("email_marketing", "withdrawn", "sdk")],
        [("email_marketing", "withdrawn", "sdk"), ("ad_audiences", "withdrawn", "gpc")],
    )
    # later, a store's older consent file is imported: grants given in February
    if late == "service":
        for p in purposes:
            _record(rt, sid, p, "granted", FEB)
    else:
        _late_file(rt, tmp_path, "u-1", purposes, "granted", FEB)
    assert not any(
        ledger_state.has_consent(runtime=rt, subject_id=sid, purpose=p) for p in purposes
    )


def test_a_repeated_grant_outlives_a_late_older_withdrawal(
    cdp_env: CdpEnv, client: TestClient, write_key: str, tmp_path: Path
) -> None:
    """The symmetric case: the ledger holds the person's latest choice, a grant as well."""
    rt = cdp_env.runtime
    sid = make_subject(rt, identities={IdentityKind.CUSTOMER_ID: "u-2"})
    _record(rt, sid, "email_marketing", "granted", JAN)
    _post(client, write_key, [_msg("u-2", {"email": True})], gpc=False)
    _late_file(rt, tmp_path, "u-2", ("email_marketing",), "withdrawn", FEB)
    assert ledger_state.has_consent(runtime=rt, subject_id=sid, purpose="email_marketing")


def test_replaying_a_request_adds_nothing_the_second_time(
    cdp_env: CdpEnv, client: TestClient, write_key: str
) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt, identities={IdentityKind.CUSTOMER_ID: "u-3"})
    for p in ("email_marketing", "ad_audiences"):
        _record(rt, sid, p, "withdrawn", JAN)
    batch = [_msg("u-3", {"email": False}), _msg("u-3", {"email": False})]
    _post(client, write_key, batch, gpc=True)
    # the repetitions are recorded once: one per purpose, however many messages repeat them
    assert sorted(_entries(rt, sid)[2:]) == [
        ("ad_audiences", "withdrawn", "gpc"),
        ("email_marketing", "withdrawn", "sdk"),
    ]
    before = dump_tables(rt)
    _post(client, write_key, batch, gpc=True)
    assert dump_tables(rt) == before


def test_gpc_on_every_request_of_a_day_adds_one_entry_per_purpose(
    cdp_env: CdpEnv, client: TestClient, write_key: str
) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt, identities={IdentityKind.CUSTOMER_ID: "u-4"})
    for p in ("email_marketing", "ad_audiences"):
        _record(rt, sid, p, "withdrawn", JAN)
    first = datetime.now(UTC)
    for _ in range(30):
        _post(client, write_key, [_msg("u-4", {"email": False}) for _ in range(3)], gpc=True)
    days = (datetime.now(UTC).date() - first.date()).days + 1  # a run across midnight: two
    where = f"WHERE subject_id = '{sid}'"
    assert count(rt, "consent_events", where + " AND mechanism = 'gpc'") == days
    assert count(rt, "consent_events", where + " AND mechanism = 'sdk'") == days
    assert count(rt, "events", where) == 90


def test_a_repetition_is_recorded_once_per_day(cdp_env: CdpEnv) -> None:
    """Requests at a fixed clock: the first repetition of a day is recorded, the others of that
    day are not, and the next day's first is."""
    rt = cdp_env.runtime
    sid = make_subject(rt, identities={IdentityKind.CUSTOMER_ID: "u-5"})
    _record(rt, sid, "ad_audiences", "withdrawn", JAN)
    _record(rt, sid, "email_marketing", "granted", JAN)
    clock = FrozenClock(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))

    def visit() -> list[tuple[str, str, str]]:
        before = len(_entries(rt, sid))
        ingest_messages(
            runtime=rt, source_name="web", messages=[_msg("u-5", {"email": True}, clock.at)],
            gpc=True, clock=clock,
        )  # fmt: skip
        return sorted(_entries(rt, sid)[before:])

    repeated = [("ad_audiences", "withdrawn", "gpc"), ("email_marketing", "granted", "sdk")]
    assert visit() == repeated
    clock.advance(hours=14, minutes=59)  # 23:59, the same day
    assert visit() == []
    clock.advance(minutes=2)  # 00:01 the next day
    assert visit() == repeated
    # a change is recorded whenever it comes, and a repetition of it on the same day is not
    clock.advance(hours=1)
    ingest_messages(
        runtime=rt, source_name="web", messages=[_msg("u-5", {"email": False}, clock.at)],
        clock=clock,
    )  # fmt: skip
    assert _entries(rt, sid)[-1] == ("email_marketing", "withdrawn", "sdk")
    clock.advance(hours=1)
    # the change back is recorded; GPC's repetition was recorded today already
    assert visit() == [("email_marketing", "granted", "sdk")]
