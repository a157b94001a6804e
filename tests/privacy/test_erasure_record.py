"""What an erasure reports: per table, the rows it removed or unlinked, counted against the rows
that existed; and its audit record names the subject actually erased and every id it absorbed,
also when a merge committed after the request's subject was resolved (the erasure follows the
id asked for forward to the survivor)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cdp.audit.activity_reports import subject_access
from cdp.audit.models import AuditLogRow
from cdp.db.all_models import metadata
from cdp.privacy import runner
from cdp.privacy.registry import ENTRIES, Treatment, present_entries
from cdp.profiles.merge import merge_subjects
from cdp.runtime import Runtime
from tests.conftest import CdpEnv
from tests.privacy.seed import seed_person
from tests.privacy.test_erasure_races import (
    bob_and_alice,
    link,
    merge_after_resolving,
    verified_erasure,
)
from tests.privacy.test_requests import ctx

LOG = AuditLogRow.__table__  # type: ignore[attr-defined]


def _row_counts(rt: Runtime) -> dict[str, int]:
    with rt.data_engine.connect() as conn:
        return {
            name: int(conn.execute(sa.text(f'SELECT count(*) FROM "{name}"')).scalar_one())
            for name in sa.inspect(conn).get_table_names()
        }


def _naming(rt: Runtime, entry_table: str, column: str, ids: list[str]) -> int:
    table = metadata.tables[entry_table]
    with rt.data_engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).select_from(table).where(table.c[column].in_(ids))
            ).scalar_one()
        )


def _erasure_records(rt: Runtime) -> list[list[str]]:
    with rt.data_engine.connect() as conn:
        rows = conn.execute(
            sa.select(LOG.c.subject_ids)
            .where(LOG.c.action == "delete", LOG.c.resource == "profile")
            .order_by(LOG.c.seq)
        ).scalars()
        return [list(json.loads(r)) for r in rows]


def test_the_erasure_of_a_merged_person_reports_every_row_it_removed(cdp_env: CdpEnv) -> None:
    """A person with orders (and their items), events, consent, traits, segments, exports... in
    every table, who absorbed a second subject in a real merge: the request's outcome counts,
    per table, exactly the rows that disappeared, and as unlinked the rows that named them."""
    rt = cdp_env.runtime
    person = seed_person(rt, "target")
    absorbed = seed_person(rt, "absorbed")
    bystander = seed_person(rt, "bystander")
    payloads = metadata.tables["privacy_payloads"]
    with rt.data_engine.begin() as conn:
        # the generic filler's payload is no ciphertext the merge could re-encrypt
        conn.execute(sa.delete(payloads).where(payloads.c.subject_id == absorbed.subject_id))
        merge_subjects(
            runtime=rt,
            conn=conn,
            survivor=person.subject_id,
            absorbed=absorbed.subject_id,
            linked_by="email",
            now=datetime(2026, 3, 2, tzinfo=UTC),
        )
    rt.vault.shred([absorbed.subject_id])  # as the merge's Resolution.finish does
    rid = verified_erasure(rt, person.email)
    ids = [person.subject_id, absorbed.subject_id]
    unlinked = {
        e.table: n
        for e in present_entries(metadata, _row_counts(rt))
        if e.treatment is Treatment.UNLINK and (n := _naming(rt, e.table, e.column, ids))
    }
    before = _row_counts(rt)

    done = runner.run(runtime=rt, ctx=ctx(), request_id=rid)

    after = _row_counts(rt)
    assert done.status == "completed" and done.outcome is not None
    removed = {t: before[t] - after[t] for t in before if after[t] < before[t]}
    assert removed["subjects"] == 1
    assert done.outcome["deleted"] == removed
    assert done.outcome["unlinked"] == unlinked
    assert unlinked["orders"] == 4  # both people's orders stay for the accounts (with items)
    assert after["order_items"] == before["order_items"]
    # the absorbed subject, and the id each seeded person's merge row names
    assert done.outcome["subjects"] == 1 and done.outcome["absorbed_ids"] == 3
    # every registered table that held the person's rows is counted
    deleting = {e.table for e in ENTRIES if e.treatment is Treatment.DELETE}
    assert {t for t in deleting if t in before} <= set(removed) | {"subject_merges"}
    assert _naming(rt, "subjects", "id", [bystander.subject_id]) == 1


def _assert_found_by_either(rt: Runtime, bob: str, alice: str) -> None:
    for sid in (bob, alice):
        report = subject_access(runtime=rt, subject_id=sid)
        deletes = [a for a in report.accesses if a.action == "delete"]
        assert deletes and set(deletes[-1].subject_ids) == {bob, alice}, sid


def test_the_audit_record_names_the_survivor_when_a_merge_commits_after_resolution(
    cdp_env: CdpEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request names Alice; the runner resolves Alice; then a real ingestion merges Alice
    into Bob. The erasure erases Bob and Alice: its audit record says so (Bob first), and the
    subject access report under either id finds it."""
    rt = cdp_env.runtime
    bob, alice = bob_and_alice(rt, tmp_path)
    rid = verified_erasure(rt, "alice@example.org")
    merge_after_resolving(monkeypatch, rt, tmp_path, alice)
    done = runner.run(runtime=rt, ctx=ctx(), request_id=rid)
    assert done.status == "completed" and done.outcome is not None
    assert _erasure_records(rt) == [[bob, alice]]
    assert done.outcome["absorbed_ids"] == 1 and done.outcome["deleted"]["subjects"] == 1
    assert bob not in str(done.outcome) and alice not in str(done.outcome)
    _assert_found_by_either(rt, bob, alice)


def test_the_audit_record_names_the_survivor_when_a_merge_commits_during_the_erasure(
    cdp_env: CdpEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The merge commits after the erasure resolved Alice, before its data transaction (at the
    shredding of her key): the erasure resolves again, and records what it erases then before
    destroying it, Bob and Alice (the first attempt's record names Alice, whose key it shred)."""
    rt = cdp_env.runtime
    bob, alice = bob_and_alice(rt, tmp_path)
    rid = verified_erasure(rt, "alice@example.org")
    shred = rt.vault.shred
    calls: list[list[str]] = []

    def merge_first(subject_ids: Any) -> int:
        calls.append(list(subject_ids))
        if len(calls) == 1:
            link(rt, tmp_path)
        return shred(subject_ids)

    monkeypatch.setattr(rt.vault, "shred", merge_first)
    done = runner.run(runtime=rt, ctx=ctx(), request_id=rid)
    assert done.status == "completed" and done.outcome is not None
    assert _erasure_records(rt) == [[alice], [bob, alice]]
    assert done.outcome["absorbed_ids"] == 1
    _assert_found_by_either(rt, bob, alice)
