"""Identity resolution: shared identities, deterministic merges, consent, re-encryption."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from cdp.clock import FrozenClock
from cdp.crypto.normalize import IdentityKind
from cdp.db.models import Identity
from cdp.errors import KeyShreddedError
from cdp.ingest.pipeline import ingest_file
from tests.conftest import CdpEnv
from tests.ingest.helpers import CUSTOMER_HEADER, count, customer, order, write_csv, write_jsonl

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _subject_of(env: CdpEnv, kind: IdentityKind, value: str) -> str:
    tok = env.runtime.tokenizer.token(kind, value).value
    with env.runtime.data_engine.connect() as conn:
        return str(
            conn.execute(
                sa.select(Identity.subject_id).where(  # type: ignore[call-overload]
                    Identity.kind == kind.value, Identity.token == tok
                )
            ).scalar_one()
        )


def test_two_customers_sharing_an_email_are_one_subject_with_both_orders(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    rt = cdp_env.runtime
    shared = "shared@example.com"
    path = write_csv(
        tmp_path / "c.csv",
        [customer(1, email=shared, phone=""), customer(2, email=shared, phone="")],
        CUSTOMER_HEADER,
    )
    s = ingest_file(runtime=rt, kind="customers", path=path)
    assert (s.inserted, s.updated) == (1, 1)
    orders = write_jsonl(tmp_path / "o.jsonl", [order(1, "C00001"), order(2, "C00002")])
    ingest_file(runtime=rt, kind="orders", path=orders)
    assert count(rt, "subjects") == 1
    sid = _subject_of(cdp_env, IdentityKind.EMAIL, shared)
    assert _subject_of(cdp_env, IdentityKind.CUSTOMER_ID, "C00002") == sid
    assert count(rt, "orders", f"WHERE subject_id = '{sid}'") == 2


def test_merge_moves_everything_to_the_older_subject(cdp_env: CdpEnv, tmp_path: Path) -> None:
    rt = cdp_env.runtime
    clock = FrozenClock(T0)
    # subject A: customer C00001 with an email (older)
    ingest_file(
        runtime=rt,
        kind="customers",
        path=write_csv(tmp_path / "a.csv", [customer(1, phone="")], CUSTOMER_HEADER),
        clock=clock,
    )
    clock.advance(days=1)
    # subject B: known only by customer id C00002, with an order, an event and consent
    ingest_file(
        runtime=rt, kind="orders", path=write_jsonl(tmp_path / "o.jsonl", [order(7, "C00002")]),
        clock=clock,
    )  # fmt: skip
    ingest_file(
        runtime=rt,
        kind="events",
        path=write_jsonl(tmp_path / "e.jsonl", [{
            "message_id": "m-1", "customer_id": "C00002", "event": "Product Viewed",
            "properties": {"sku": "P1"}, "timestamp": "2026-01-02T00:00:00Z"}]),
        clock=clock,
    )  # fmt: skip
    consent_header = ["customer_id", "purpose", "status", "occurred_at", "source"]
    ingest_file(
        runtime=rt,
        kind="consents",
        path=write_csv(tmp_path / "k.csv", [
            {"customer_id": "C00001", "purpose": "email_marketing", "status": "granted",
             "occurred_at": "2026-01-01T00:00:00Z", "source": "web"},
            {"customer_id": "C00002", "purpose": "email_marketing", "status": "withdrawn",
             "occurred_at": "2025-06-01T00:00:00Z", "source": "web"},
            {"customer_id": "C00002", "purpose": "analytics", "status": "granted",
             "occurred_at": "2025-06-01T00:00:00Z", "source": "web"},
        ], consent_header),
        clock=clock,
    )  # fmt: skip
    a = _subject_of(cdp_env, IdentityKind.CUSTOMER_ID, "C00001")
    b = _subject_of(cdp_env, IdentityKind.CUSTOMER_ID, "C00002")
    assert a != b
    clock.advance(days=1)
    # a record linking them: C00002 with A's email
    link = write_csv(
        tmp_path / "l.csv", [customer(2, email="person1@example.com", phone="", city="")],
        CUSTOMER_HEADER,
    )  # fmt: skip
    s = ingest_file(runtime=rt, kind="customers", path=link, clock=clock)
    assert s.merges == 1
    assert count(rt, "subjects") == 1
    assert _subject_of(cdp_env, IdentityKind.CUSTOMER_ID, "C00002") == a
    assert count(rt, "orders", f"WHERE subject_id = '{a}'") == 1
    with rt.data_engine.connect() as conn:
        merged = conn.exec_driver_sql(
            "SELECT survivor_id, merged_id, linked_by FROM subject_merges"
        ).one()
        ev = conn.exec_driver_sql("SELECT subject_id, properties_ct FROM events").one()
        consent = conn.exec_driver_sql(
            "SELECT purpose, status, occurred_at FROM consent_events WHERE subject_id = "
            f"'{a}' ORDER BY occurred_at, id"
        ).all()
    assert tuple(merged) == (a, b, "customer_id")
    # event properties re-encrypted under the survivor's key (the AAD binds the subject)
    assert ev[0] == a
    assert rt.vault.decrypt(a, "event:m-1", bytes(ev[1])) == '{"sku":"P1"}'
    # the absorbed key is destroyed
    rt.vault.forget_cached()
    with pytest.raises(KeyShreddedError):
        rt.vault.cipher(b)
    # most restrictive consent: the latest state for email_marketing is a withdrawal
    latest: dict[str, str] = {}
    for purpose, status, _at in consent:
        latest[purpose] = status
    assert latest == {"email_marketing": "withdrawn", "analytics": "granted"}
    assert len(consent) == 4


def test_survivor_is_the_older_subject_whatever_the_order(cdp_env: CdpEnv, tmp_path: Path) -> None:
    rt = cdp_env.runtime
    clock = FrozenClock(T0)
    for n in (1, 2):
        ingest_file(
            runtime=rt,
            kind="customers",
            path=write_csv(tmp_path / f"{n}.csv", [customer(n, phone="")], CUSTOMER_HEADER),
            clock=clock,
        )
        clock.advance(hours=1)
    older = _subject_of(cdp_env, IdentityKind.CUSTOMER_ID, "C00001")
    # an order naming C00002 by customer id and C00001's email links them
    ingest_file(
        runtime=rt,
        kind="customers",
        path=write_csv(
            tmp_path / "x.csv", [customer(2, email="person1@example.com", phone="")],
            CUSTOMER_HEADER,
        ),
        clock=clock,
    )  # fmt: skip
    assert _subject_of(cdp_env, IdentityKind.CUSTOMER_ID, "C00002") == older
    assert count(rt, "subjects") == 1
    assert count(rt, "subject_merges") == 1


def test_a_merge_of_a_subject_already_gone_is_not_recorded(cdp_env: CdpEnv) -> None:
    """On PostgreSQL two batches can resolve the same subjects at once; the one that merges
    second finds the absorbed subject gone and must not record a second merge of it."""
    from cdp.profiles.merge import SubjectGoneError, merge_subjects
    from tests.factories import make_subject

    rt = cdp_env.runtime
    survivor = make_subject(rt, identities={IdentityKind.EMAIL: "keep@example.com"})
    with rt.data_engine.begin() as conn, pytest.raises(SubjectGoneError):
        merge_subjects(
            runtime=rt,
            conn=conn,
            survivor=survivor,
            absorbed="0" * 32,
            linked_by="email",
            now=datetime(2026, 5, 1, tzinfo=UTC),
        )
    assert count(rt, "subject_merges") == 0 and count(rt, "subjects") == 1


def test_a_batch_whose_merge_lost_a_race_is_resolved_again(
    cdp_env: CdpEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cdp.profiles import merge, resolve

    rt = cdp_env.runtime
    first = write_csv(
        tmp_path / "a.csv",
        [
            customer(1, email="a@example.com", phone=""),
            customer(2, email="b@example.com", phone=""),
        ],
        CUSTOMER_HEADER,
    )
    ingest_file(runtime=rt, kind="customers", path=first)
    calls: list[int] = []
    real = resolve.merge_subjects

    def losing_once(**kw: object) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise merge.SubjectGoneError("taken by a concurrent writer")
        real(**kw)  # type: ignore[arg-type]

    monkeypatch.setattr(resolve, "merge_subjects", losing_once)
    link = write_csv(
        tmp_path / "link.csv", [customer(1, email="b@example.com", phone="")], CUSTOMER_HEADER
    )
    summary = ingest_file(runtime=rt, kind="customers", path=link)
    assert len(calls) == 2 and summary.merges == 1 and summary.rejected == 0
    assert count(rt, "subjects") == 1 and count(rt, "subject_merges") == 1
