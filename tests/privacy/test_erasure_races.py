"""An erasure that races a merge erases the person: the subject its id was absorbed into, whether
the merge committed before the erasure resolved the subject or between that and its deletes.

The interleavings are injected at the exact point (a hook), not left to timing."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cdp.crypto.normalize import IdentityKind
from cdp.db.models import Identity, PiiRecord, Subject
from cdp.ingest.pipeline import Summary, ingest_file
from cdp.privacy import request_filing, request_lifecycle, runner
from cdp.privacy.erasure import is_tombstoned
from cdp.runtime import Runtime
from tests.conftest import CdpEnv
from tests.privacy.test_requests import ctx

IDENT = Identity.__table__  # type: ignore[attr-defined]
SUBJECTS = Subject.__table__  # type: ignore[attr-defined]
PII = PiiRecord.__table__  # type: ignore[attr-defined]


def ingest(rt: Runtime, path: Path, *rows: tuple[str, str, str]) -> Summary:
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(["customer_id", "email", "first_name"])
        out.writerows(rows)
    return ingest_file(runtime=rt, kind="customers", path=path)


def subject_of(rt: Runtime, kind: IdentityKind, value: str) -> str | None:
    token = rt.tokenizer.token(kind, value).value
    with rt.data_engine.connect() as conn:
        return conn.execute(
            sa.select(IDENT.c.subject_id).where(IDENT.c.kind == kind.value, IDENT.c.token == token)
        ).scalar()


def bob_and_alice(rt: Runtime, tmp_path: Path) -> tuple[str, str]:
    """Bob (K2), then Alice (K1): Bob is older, so he survives a merge of the two."""
    ingest(rt, tmp_path / "bob.csv", ("K2", "bob@example.org", "Bob"))
    ingest(rt, tmp_path / "alice.csv", ("K1", "alice@example.org", "Alice"))
    bob = subject_of(rt, IdentityKind.EMAIL, "bob@example.org")
    alice = subject_of(rt, IdentityKind.EMAIL, "alice@example.org")
    assert bob and alice and bob != alice
    return bob, alice


def verified_erasure(rt: Runtime, email: str) -> str:
    view = request_filing.create(
        runtime=rt, ctx=ctx(), type="erasure", identity_kind="email", identity_value=email
    )
    request_lifecycle.verify(runtime=rt, request_id=view.id, actor="dpo-1")
    return view.id


def link(rt: Runtime, tmp_path: Path) -> None:
    """K2 (Bob) with Alice's email: Alice's subject is absorbed into Bob's."""
    assert ingest(rt, tmp_path / "link.csv", ("K2", "alice@example.org", "Alice")).merges == 1


def merge_after_resolving(
    monkeypatch: pytest.MonkeyPatch, rt: Runtime, tmp_path: Path, alice: str
) -> None:
    """Have the request runner's resolution of the person (Alice) followed at once by a real
    ingestion that merges Alice into Bob (the older subject survives)."""
    resolve = runner._subject_of

    def merged_right_after(*args: Any) -> str | None:
        sid = resolve(*args)
        assert sid == alice
        link(rt, tmp_path)
        return sid

    monkeypatch.setattr(runner, "_subject_of", merged_right_after)


def assert_person_gone(rt: Runtime, *subjects: str) -> None:
    for kind, value in (
        (IdentityKind.EMAIL, "alice@example.org"),
        (IdentityKind.EMAIL, "bob@example.org"),
        (IdentityKind.CUSTOMER_ID, "K1"),
        (IdentityKind.CUSTOMER_ID, "K2"),
    ):
        assert subject_of(rt, kind, value) is None
        assert is_tombstoned(runtime=rt, kind=kind, raw=value)
    with rt.data_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(SUBJECTS)).scalar() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(PII)).scalar() == 0
    assert not any(rt.vault.has_key(s) for s in subjects)


def test_an_erasure_follows_a_merge_committed_after_the_runner_resolved_the_subject(
    cdp_env: CdpEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = cdp_env.runtime
    bob, alice = bob_and_alice(rt, tmp_path)
    rid = verified_erasure(rt, "alice@example.org")
    merge_after_resolving(monkeypatch, rt, tmp_path, alice)
    done = runner.run(runtime=rt, ctx=ctx(), request_id=rid)
    assert done.status == "completed"
    assert done.outcome is not None
    assert done.outcome["keys_shredded"] == 1  # Bob's (Alice's went with the merge)
    assert done.outcome["tombstones"] == 4
    assert done.outcome["deleted"]["subjects"] == 1
    assert_person_gone(rt, bob, alice)


def test_an_erasure_resolves_again_when_a_merge_commits_before_its_deletes(
    cdp_env: CdpEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The merge commits after the erasure resolved the subject and before its data transaction
    (at the shredding of the keys): the transaction sees it, rolls back and resolves again."""
    rt = cdp_env.runtime
    bob, alice = bob_and_alice(rt, tmp_path)
    rid = verified_erasure(rt, "alice@example.org")
    shred = rt.vault.shred
    calls: list[list[str]] = []

    def merge_first(subject_ids: Any) -> int:
        calls.append(list(subject_ids))
        if len(calls) == 1:
            link(rt, tmp_path)  # its own shred of Alice's key comes through here too
        return shred(subject_ids)

    monkeypatch.setattr(rt.vault, "shred", merge_first)
    done = runner.run(runtime=rt, ctx=ctx(), request_id=rid)
    assert done.status == "completed"
    assert calls[0] == [alice] and [bob, alice] in calls
    assert_person_gone(rt, bob, alice)
