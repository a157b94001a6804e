"""An ingest that meets a subject whose data key is destroyed while its rows are still there (an
erasure between its shred and its commit, one that stopped half-way, a key store restored from
before an erasure) refuses that subject's records as ``erased`` and writes the rest: it used to
abort the whole file (KeyShreddedError, exit 2) or answer a Segment call with 500.

The interleavings are injected at the exact point (the retry's back-off), not left to timing."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cdp.api.app import create_app
from cdp.crypto.normalize import IdentityKind
from cdp.db.models import Identity
from cdp.ingest import batch_commit
from cdp.ingest.pipeline import Summary, ingest_file
from cdp.ingest.sources import create_source
from cdp.privacy.erasure import erase_subject, is_tombstoned
from cdp.runtime import Runtime
from tests.api.test_segment_api import _msg, _post_batch
from tests.conftest import CdpEnv

IDENT = Identity.__table__  # type: ignore[attr-defined]


def ingest(rt: Runtime, path: Path, *ids: str) -> Summary:
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(["customer_id", "email", "first_name"])
        out.writerows((i, f"{i.lower()}@example.org", f"Name{i}") for i in ids)
    return ingest_file(runtime=rt, kind="customers", path=path)


def subject_of(rt: Runtime, customer_id: str) -> str | None:
    token = rt.tokenizer.token(IdentityKind.CUSTOMER_ID, customer_id).value
    with rt.data_engine.connect() as conn:
        return conn.execute(
            sa.select(IDENT.c.subject_id).where(
                IDENT.c.kind == "customer_id", IDENT.c.token == token
            )
        ).scalar()


def test_a_subject_left_without_a_key_has_its_records_refused_and_the_file_goes_on(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    """An erasure that shredded the key and stopped before its deletes (or a key store restored
    from before an erasure): K3's record is refused as erased, K5 and K6 are stored."""
    rt = cdp_env.runtime
    ingest(rt, tmp_path / "first.csv", "K3")
    k3 = subject_of(rt, "K3")
    assert k3 is not None
    rt.vault.shred([k3])
    summary = ingest(rt, tmp_path / "second.csv", "K5", "K3", "K6")
    assert (summary.inserted, summary.rejected, summary.reasons) == (2, 1, {"erased": 1})
    assert subject_of(rt, "K5") and subject_of(rt, "K6")
    assert subject_of(rt, "K3") == k3  # untouched: running its erasure again finishes it
    assert erase_subject(runtime=rt, subject_id=k3).deleted["subjects"] == 1


def test_an_ingest_racing_an_erasure_is_resolved_again_after_the_erasure_commits(
    cdp_env: CdpEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key is shredded, the batch meets it and rolls back; the erasure commits before the
    retry, whose resolution finds the tombstone."""
    rt = cdp_env.runtime
    ingest(rt, tmp_path / "first.csv", "K3")
    k3 = subject_of(rt, "K3")
    assert k3 is not None
    rt.vault.shred([k3])
    waits: list[int] = []

    def erasure_commits(attempt: int) -> None:
        waits.append(attempt)
        erase_subject(runtime=rt, subject_id=k3)

    monkeypatch.setattr(batch_commit, "backoff", erasure_commits)
    summary = ingest(rt, tmp_path / "second.csv", "K5", "K3", "K6")
    assert waits == [1]
    assert (summary.inserted, summary.rejected, summary.reasons) == (2, 1, {"erased": 1})
    assert subject_of(rt, "K3") is None
    assert is_tombstoned(runtime=rt, kind=IdentityKind.CUSTOMER_ID, raw="K3")
    assert subject_of(rt, "K5") and subject_of(rt, "K6")


def test_a_segment_call_naming_a_subject_without_a_key_is_not_a_500(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    key = create_source(runtime=rt, name="web").write_key

    def identify(user: str) -> dict[str, Any]:
        return _msg("identify", userId=user, traits={"email": f"{user}@example.org", "name": user})

    with TestClient(create_app(), raise_server_exceptions=False) as c:
        assert _post_batch(c, key, [identify("u3")]).status_code == 200
        u3 = subject_of(rt, "u3")
        assert u3 is not None
        rt.vault.shred([u3])
        answer = _post_batch(c, key, [identify("u5"), identify("u3"), identify("u6")])
    assert answer.status_code == 200, answer.text
    assert subject_of(rt, "u5") and subject_of(rt, "u6")
    assert subject_of(rt, "u3") == u3  # refused, not taken over by a new subject with a new key
    assert rt.keystore.load([u3]) == {}
