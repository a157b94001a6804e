"""An audience below the destination's minimum refuses the adds, never the removes: consent
withdrawals, restrictions and subjects leaving the segment still reach the destination, and the
run says so (status ``removes_only``, error ``audience_too_small``, counts that add up)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from cdp.errors import AudienceTooSmallError
from cdp.exports.ledger import recipients_of
from cdp.exports.records import get_export
from cdp.exports.sync import SYNC
from tests.exports.conftest import World

MIN = 5


def _emails(path: str) -> list[str]:
    with Path(path).open(newline="") as fh:
        return sorted(r["email"] for r in csv.DictReader(fh))


def _synced(world: World) -> set[str]:
    with world.rt.data_engine.connect() as conn:
        return set(conn.execute(sa.select(SYNC.c.subject_id)).scalars())


def _refused(world: World, *, full: bool = False) -> AudienceTooSmallError:
    with pytest.raises(AudienceTooSmallError) as info:
        world.export_email(full=full)
    return info.value


def _decrypt_audits(world: World, export_id: str) -> list[str]:
    with world.rt.data_engine.connect() as conn:
        return [
            str(r[0])
            for r in conn.execute(
                sa.text(
                    "SELECT subject_id FROM audit_subjects s JOIN audit_log a ON a.seq = s.seq "
                    "WHERE a.request_id = :e AND a.action = 'decrypt'"
                ),
                {"e": export_id},
            )
        ]


@pytest.mark.parametrize("full", [False, True], ids=["incremental", "full"])
def test_withdrawals_reach_the_destination_while_the_audience_is_too_small(
    world: World, full: bool
) -> None:
    rt = world.rt
    ids = [world.person({"email": f"m{i}@example.com"}) for i in range(MIN + 4)]
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=MIN)
    first = world.export_email()
    assert first.counts.sent == MIN + 4
    gone = ids[:6]
    for sid in gone:
        world.consent(sid, ["email_marketing"], "withdrawn")
    newcomer = world.person({"email": "new@example.com"})  # eligible, but the adds are refused
    # 3 stay + the newcomer: 4 eligible, below the minimum of 5

    err = _refused(world, full=full)
    # the withdrawn were removed from the destination; the others stay, the newcomer not added
    assert _synced(world) == set(ids[6:])
    assert err.export_id is not None
    assert "only 4 subjects remain" in str(err) and f"at least {MIN}" in str(err)
    assert "adds were refused" in str(err) and "removes were sent" in str(err)
    assert "example.com" not in str(err)
    run = get_export(runtime=rt, export_id=err.export_id)
    assert (run.status, run.error_code) == ("removes_only", "audience_too_small")
    manifest = run.manifest
    assert manifest is not None and manifest["status"] == "removes_only"
    c = manifest["counts"]
    refused = 4 if full else 1  # a full send refuses every eligible subject
    assert (c["members"], c["excluded_consent"], c["sent"], c["adds_refused"]) == (
        MIN + 5,
        6,
        0,
        refused,
    )
    assert (c["removed"], c["removes_unresolvable"], c["removes_failed"]) == (6, 0, 0)
    assert c["unchanged"] == (0 if full else 3) and err.counts == c
    assert c["members"] == sum(
        c[k]
        for k in (
            "excluded_consent",
            "excluded_restriction",
            "excluded_no_data",
            "unchanged",
            "sent",
            "failed_delivery",
            "adds_refused",
        )
    )
    # the removes file went out, no adds file; the manifest lies beside it
    [out] = manifest["outputs"]
    assert out["op"] == "remove" and out["rows"] == 6
    assert _emails(out["path"]) == sorted(f"m{i}@example.com" for i in range(6))
    folder = Path(out["path"]).parent
    assert not (folder / f"{err.export_id}.csv").exists()
    on_disk = json.loads((folder / f"{err.export_id}.manifest.json").read_text())
    assert on_disk == manifest
    # ledger: a remove for each withdrawn person, nothing for the newcomer
    for sid in gone:
        assert [r.op for r in recipients_of(sid, runtime=rt)] == ["add", "remove"]
    assert recipients_of(newcomer, runtime=rt) == []
    assert sorted(_decrypt_audits(world, err.export_id)) == sorted(gone)

    # nothing left to remove: refused outright, nothing written, state unchanged
    again = _refused(world, full=full)
    assert "nothing was sent" in str(again)
    assert again.export_id is not None
    view = get_export(runtime=rt, export_id=again.export_id)
    assert (view.status, view.error_code) == ("refused", "audience_too_small")
    assert view.manifest is not None and view.manifest["outputs"] == []
    assert view.manifest["counts"]["adds_refused"] == refused
    assert not any(folder.glob(f"{again.export_id}*"))
    assert _synced(world) == set(ids[6:])
    assert all(len(recipients_of(s, runtime=rt)) == 2 for s in gone)


def test_adds_refused_after_decryption_leave_no_trace_but_the_removes_go(world: World) -> None:
    """The second check (usable rows after decryption) refuses the adds the same way: the
    decrypted adds were written to no file, their ledger rows are dropped, they stay out of the
    sync state; the removes of the same run are sent."""
    rt = world.rt
    ids = [world.person({"email": f"k{i}@example.com"}) for i in range(MIN + 1)]
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=MIN)
    world.export_email()
    for sid in ids[:3]:
        world.consent(sid, ["email_marketing"], "withdrawn")
    valid = world.person({"email": "fresh@example.com"})
    world.person({"email": ""})  # stored, nothing usable once decrypted
    # eligible: 3 unchanged + 2 adds = 5 (passes the first check); usable: 4
    err = _refused(world)
    assert _synced(world) == set(ids[3:])  # removed; the refused add never joined
    assert "only 4 subjects remain" in str(err)
    assert err.export_id is not None
    view = get_export(runtime=rt, export_id=err.export_id)
    assert view.status == "removes_only" and view.manifest is not None
    c = view.manifest["counts"]
    assert (c["sent"], c["adds_refused"], c["excluded_no_data"], c["removed"]) == (0, 1, 1, 3)
    assert [o["op"] for o in view.manifest["outputs"]] == ["remove"]
    assert recipients_of(valid, runtime=rt) == []
    # the decryption of the refused add is on the audit trail: it happened
    assert valid in _decrypt_audits(world, err.export_id)
