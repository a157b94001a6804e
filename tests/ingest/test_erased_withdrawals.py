"""A consent record that names an erased identity beside live ones: a withdrawal is recorded for
every live subject the other identities name, and nothing else happens (no link to the erased
person, no merge, nothing created, never a grant). It used to be refused whole as ``erased``, so
the live subject kept its grant."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cdp.consent import ledger_state
from cdp.crypto.normalize import IdentityKind
from cdp.db.models import Identity
from cdp.ingest.pipeline import Summary, ingest_file
from cdp.privacy.erasure import erase_subject
from cdp.runtime import Runtime
from tests.conftest import CdpEnv
from tests.ingest.helpers import write_csv

IDENT = Identity.__table__  # type: ignore[attr-defined]
CONSENT_HEADER = [
    "customer_id", "email", "phone", "purpose", "status", "occurred_at", "source",
]  # fmt: skip


def holder(rt: Runtime, kind: IdentityKind, value: str) -> str | None:
    token = rt.tokenizer.token(kind, value).value
    with rt.data_engine.connect() as conn:
        return conn.execute(
            sa.select(IDENT.c.subject_id).where(IDENT.c.kind == kind.value, IDENT.c.token == token)
        ).scalar()


def count(rt: Runtime, table: str) -> int:
    with rt.data_engine.connect() as conn:
        return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())


def customers(rt: Runtime, path: Path, rows: list[dict[str, str]]) -> None:
    header = ["customer_id", "email", "phone", "first_name"]
    ingest_file(runtime=rt, kind="customers", path=write_csv(path, rows, header))


def consents(rt: Runtime, path: Path, rows: list[dict[str, str]]) -> Summary:
    base = {"purpose": "email_marketing", "occurred_at": "2025-06-01T00:00:00Z", "source": "web"}
    full = [{**base, **r} for r in rows]
    return ingest_file(runtime=rt, kind="consents", path=write_csv(path, full, CONSENT_HEADER))


def erased_customer(rt: Runtime, tmp_path: Path, customer_id: str) -> None:
    customers(rt, tmp_path / f"{customer_id}.csv", [{"customer_id": customer_id}])
    sid = holder(rt, IdentityKind.CUSTOMER_ID, customer_id)
    assert sid is not None
    erase_subject(runtime=rt, subject_id=sid)


def granted(rt: Runtime, sid: str, purpose: str = "email_marketing") -> bool:
    return ledger_state.has_consent(runtime=rt, subject_id=sid, purpose=purpose)


def rejects(summary: Summary) -> list[dict[str, Any]]:
    assert summary.rejects_path is not None
    return [json.loads(line) for line in summary.rejects_path.read_text().splitlines()]


def test_a_withdrawal_naming_an_erased_customer_reaches_the_live_email(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    rt = cdp_env.runtime
    customers(rt, tmp_path / "c.csv", [{"email": "live@example.com", "first_name": "Liv"}])
    live = holder(rt, IdentityKind.EMAIL, "live@example.com")
    assert live is not None
    grant = consents(rt, tmp_path / "g.csv", [{"email": "live@example.com", "status": "granted"}])
    assert grant.inserted == 1 and granted(rt, live)
    erased_customer(rt, tmp_path, "U1")
    subjects, identities = count(rt, "subjects"), count(rt, "identities")

    row = {"customer_id": "U1", "email": "live@example.com", "status": "withdrawn"}
    s = consents(rt, tmp_path / "w.csv", [row])
    # recorded, not a reject; the record is noted as having named an erased identity
    assert (s.inserted, s.rejected, s.reasons, s.erased_named) == (1, 0, {}, 1)
    assert s.as_dict()["erased_named"] == 1 and s.rejects_path is None
    assert not granted(rt, live)
    # the erased person is linked to no one and nothing was created
    assert holder(rt, IdentityKind.CUSTOMER_ID, "U1") is None
    assert (count(rt, "subjects"), count(rt, "identities")) == (subjects, identities)
    assert (s.merges, s.subjects_created) == (0, 0)
    # a replay adds nothing, nor does the same withdrawal sent without the erased identity
    again = consents(rt, tmp_path / "w2.csv", [row])
    assert (again.inserted, again.duplicates, again.rejected) == (0, 1, 0)
    alone = consents(
        rt, tmp_path / "w3.csv", [{"email": "live@example.com", "status": "withdrawn"}]
    )
    assert (alone.inserted, alone.duplicates) == (0, 1)
    assert [h.status for h in ledger_state.history(runtime=rt, subject_id=live)] == [
        "granted",
        "withdrawn",
    ]


def test_a_grant_naming_an_erased_identity_is_still_refused(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    rt = cdp_env.runtime
    customers(rt, tmp_path / "c.csv", [{"email": "live@example.com", "first_name": "Liv"}])
    live = holder(rt, IdentityKind.EMAIL, "live@example.com")
    assert live is not None
    erased_customer(rt, tmp_path, "U1")
    rows = [
        {"customer_id": "U1", "email": "live@example.com", "status": "granted"},
        # a withdrawal whose only other identity nobody holds: nothing to record it for
        {"customer_id": "U1", "email": "nobody@example.com", "status": "withdrawn"},
        {"customer_id": "U1", "status": "withdrawn", "source": "shop"},
    ]
    subjects = count(rt, "subjects")
    s = consents(rt, tmp_path / "g.csv", rows)
    assert (s.inserted, s.rejected, s.reasons, s.erased_named) == (0, 3, {"erased": 3}, 0)
    assert [(r["line"], r["reason"]) for r in rejects(s)] == [
        (2, "erased"),
        (3, "erased"),
        (4, "erased"),
    ]
    assert not granted(rt, live)
    assert ledger_state.history(runtime=rt, subject_id=live) == []
    assert count(rt, "subjects") == subjects
    assert holder(rt, IdentityKind.EMAIL, "nobody@example.com") is None


def test_every_live_subject_named_gets_the_withdrawal_and_none_are_merged(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    rt = cdp_env.runtime
    customers(
        rt,
        tmp_path / "c.csv",
        [
            {"email": "one@example.com", "first_name": "One"},
            {"phone": "+14155550123", "first_name": "Two"},
        ],
    )
    one = holder(rt, IdentityKind.EMAIL, "one@example.com")
    two = holder(rt, IdentityKind.PHONE, "+14155550123")
    assert one and two and one != two
    consents(
        rt,
        tmp_path / "g.csv",
        [
            {"email": "one@example.com", "status": "granted"},
            {"phone": "+14155550123", "status": "granted"},
        ],
    )
    assert granted(rt, one) and granted(rt, two)
    erased_customer(rt, tmp_path, "U1")
    row = {
        "customer_id": "U1",
        "email": "one@example.com",
        "phone": "+14155550123",
        "status": "withdrawn",
    }
    s = consents(rt, tmp_path / "w.csv", [row])
    # counts are per ledger entry: one record, two subjects
    assert (s.inserted, s.rejected, s.merges, s.erased_named) == (2, 0, 0, 1)
    assert not granted(rt, one) and not granted(rt, two)
    assert holder(rt, IdentityKind.EMAIL, "one@example.com") == one
    assert holder(rt, IdentityKind.PHONE, "+14155550123") == two


def test_a_subject_without_a_data_key_counts_as_erased_here_too(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    """An erasure stopped half-way (rows left, key destroyed): same rule as a tombstone."""
    rt = cdp_env.runtime
    customers(
        rt,
        tmp_path / "c.csv",
        [{"customer_id": "K3", "first_name": "Kay"}, {"email": "live@example.com"}],
    )
    keyless = holder(rt, IdentityKind.CUSTOMER_ID, "K3")
    live = holder(rt, IdentityKind.EMAIL, "live@example.com")
    assert keyless and live
    consents(rt, tmp_path / "g.csv", [{"email": "live@example.com", "status": "granted"}])
    rt.vault.shred([keyless])
    rows = [
        {"customer_id": "K3", "email": "live@example.com", "status": "withdrawn"},
        {"customer_id": "K3", "email": "live@example.com", "status": "granted", "source": "shop"},
    ]
    s = consents(rt, tmp_path / "w.csv", rows)
    assert (s.inserted, s.rejected, s.reasons, s.erased_named) == (1, 1, {"erased": 1}, 1)
    assert not granted(rt, live)
    assert holder(rt, IdentityKind.CUSTOMER_ID, "K3") == keyless
    assert ledger_state.history(runtime=rt, subject_id=keyless) == []


def test_a_subject_merged_away_in_the_same_batch_is_followed_to_its_survivor(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    rt = cdp_env.runtime
    customers(rt, tmp_path / "c1.csv", [{"email": "one@example.com", "first_name": "One"}])
    customers(rt, tmp_path / "c2.csv", [{"phone": "+14155550123", "first_name": "Two"}])
    one = holder(rt, IdentityKind.EMAIL, "one@example.com")
    assert one is not None
    erased_customer(rt, tmp_path, "U1")
    rows = [
        # links the two stored subjects: the phone's is absorbed by the email's (older)
        {"email": "one@example.com", "phone": "+14155550123", "status": "granted"},
        {"customer_id": "U1", "phone": "+14155550123", "status": "withdrawn", "source": "shop"},
        # the erased record does not create the subject of an identity nobody holds yet, but
        # one another record of the batch creates is live by the end of it
        {"customer_id": "U1", "email": "new@example.com", "status": "withdrawn", "source": "app"},
        {"email": "new@example.com", "status": "granted", "occurred_at": "2025-05-01T00:00:00Z"},
    ]
    s = consents(rt, tmp_path / "w.csv", rows)
    assert (s.inserted, s.rejected, s.merges, s.erased_named) == (4, 0, 1, 2)
    assert holder(rt, IdentityKind.PHONE, "+14155550123") == one
    assert not granted(rt, one)
    new = holder(rt, IdentityKind.EMAIL, "new@example.com")
    assert new is not None and not granted(rt, new)
    assert holder(rt, IdentityKind.CUSTOMER_ID, "U1") is None
