"""A Segment call whose ``userId`` was erased and whose ``anonymousId`` is a live visitor: its
withdrawals (a banner's "no", the ``Sec-GPC: 1`` signal) are recorded for the visitor's subject;
its grants, traits and events are not, and the erased person is linked to no one. The withdrawal
used to be dropped with the rest, under a 200, leaving the visitor eligible for ad exports."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from cdp.consent import ledger_state
from cdp.crypto.normalize import IdentityKind
from cdp.ingest.pipeline import ingest_file
from cdp.privacy.erasure import erase_subject
from cdp.runtime import Runtime
from tests.api.test_segment_api import _msg, _post_batch, _subject
from tests.conftest import CdpEnv
from tests.ingest.helpers import write_csv


def _now(**fields: Any) -> dict[str, Any]:
    kind = fields.pop("type")
    return _msg(kind, timestamp=datetime.now(UTC).isoformat(), **fields)


def _prefs(**categories: bool) -> dict[str, Any]:
    return {"consent": {"categoryPreferences": categories}}


def _count(rt: Runtime, table: str) -> int:
    with rt.data_engine.connect() as conn:
        return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())


def _eligible(rt: Runtime, sid: str, purpose: str) -> bool:
    condition = ledger_state.eligible_condition(purpose, sa.literal(sid))
    with rt.data_engine.connect() as conn:
        return conn.execute(sa.select(sa.literal(1)).where(condition)).first() is not None


def _visitor_and_erased_account(cdp_env: CdpEnv, client: TestClient, key: str, tmp: Path) -> str:
    """Device dev-X: a live visitor with an email who accepted advertising; shop account U-1:
    known from the shop's file, then erased. Returns the visitor's subject."""
    rt = cdp_env.runtime
    accepted = _now(
        type="identify",
        anonymousId="dev-X",
        traits={"email": "visitor.x@example.com"},
        context=_prefs(advertising=True),
    )
    assert _post_batch(client, key, [accepted]).status_code == 200
    visitor = _subject(cdp_env, IdentityKind.ANONYMOUS_ID, "dev-X")
    assert visitor is not None and _eligible(rt, visitor, "ad_audiences")
    path = write_csv(
        tmp / "c.csv", [{"customer_id": "U-1", "first_name": "Zed"}], ["customer_id", "first_name"]
    )
    ingest_file(runtime=rt, kind="customers", path=path)
    account = _subject(cdp_env, IdentityKind.CUSTOMER_ID, "U-1")
    assert account is not None
    erase_subject(runtime=rt, subject_id=account)
    return visitor


def test_a_banner_no_and_gpc_with_an_erased_user_id_reach_the_live_visitor(
    cdp_env: CdpEnv, client: TestClient, key: str, tmp_path: Path
) -> None:
    rt = cdp_env.runtime
    visitor = _visitor_and_erased_account(cdp_env, client, key, tmp_path)
    subjects, identities = _count(rt, "subjects"), _count(rt, "identities")
    declined = _now(
        type="track",
        userId="U-1",
        anonymousId="dev-X",
        event="Viewed",
        context=_prefs(advertising=False, analytics=False),
    )
    r = _post_batch(client, key, [declined], **{"Sec-GPC": "1"})
    assert r.status_code == 200, r.text
    assert not _eligible(rt, visitor, "ad_audiences")
    states = ledger_state.current_state(runtime=rt, subject_id=visitor)
    assert (states["ad_audiences"].status, states["ad_audiences"].mechanism) == ("withdrawn", "gpc")
    assert (states["analytics"].status, states["analytics"].mechanism) == ("withdrawn", "sdk")
    # the erased account is linked to no one; its event is not stored; nothing was created
    assert _subject(cdp_env, IdentityKind.CUSTOMER_ID, "U-1") is None
    assert (_count(rt, "subjects"), _count(rt, "identities")) == (subjects, identities)
    assert _count(rt, "events") == 0
    # the same signal again on the same day adds nothing (change-only mode)
    entries = len(ledger_state.history(runtime=rt, subject_id=visitor))
    again = _now(type="track", userId="U-1", anonymousId="dev-X", event="Viewed")
    assert _post_batch(client, key, [again], **{"Sec-GPC": "1"}).status_code == 200
    assert len(ledger_state.history(runtime=rt, subject_id=visitor)) == entries


def test_a_grant_or_traits_with_an_erased_user_id_are_not_recorded(
    cdp_env: CdpEnv, client: TestClient, key: str, tmp_path: Path
) -> None:
    rt = cdp_env.runtime
    visitor = _visitor_and_erased_account(cdp_env, client, key, tmp_path)
    before = ledger_state.history(runtime=rt, subject_id=visitor)
    identities = _count(rt, "identities")
    granted = _now(
        type="identify",
        userId="U-1",
        anonymousId="dev-X",
        traits={"email": "other.address@example.com"},
        context=_prefs(analytics=True, email=True),
    )
    assert _post_batch(client, key, [granted]).status_code == 200
    assert ledger_state.history(runtime=rt, subject_id=visitor) == before
    assert _count(rt, "identities") == identities
    assert _subject(cdp_env, IdentityKind.EMAIL, "other.address@example.com") is None
