"""A request filed before its person is known: kept whole, linked when run, seen by retention."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from cdp.audit.models import AuditLogRow
from cdp.clock import FrozenClock
from cdp.crypto.normalize import IdentityKind
from cdp.db.models import Subject
from cdp.privacy import request_filing, request_lifecycle, requests, runner
from cdp.privacy.models import PrivacyPayload, PrivacyRequest
from cdp.privacy.restriction import is_restricted
from cdp.privacy.retention import run_retention
from cdp.runtime import Runtime
from tests.conftest import CdpEnv
from tests.factories import make_subject, read_pii
from tests.privacy.test_requests import ctx

PAYLOADS = PrivacyPayload.__table__  # type: ignore[attr-defined]
REQUESTS = PrivacyRequest.__table__  # type: ignore[attr-defined]


def _file(rt: Runtime, kind: str, email: str, **kw: object) -> str:
    view = request_filing.create(
        runtime=rt,
        ctx=ctx(),
        type=kind,
        identity_kind="email",
        identity_value=email,
        **kw,  # type: ignore[arg-type]
    )
    assert view.subject_id is None  # nobody has this email yet
    return view.id


def _run(rt: Runtime, rid: str) -> requests.RequestView:
    request_lifecycle.verify(runtime=rt, request_id=rid, actor="dpo-1")
    return runner.run(runtime=rt, ctx=ctx(), request_id=rid)


def _payload_kinds(rt: Runtime) -> list[str]:
    with rt.data_engine.connect() as conn:
        return sorted(conn.execute(sa.select(PAYLOADS.c.kind)).scalars())


def test_a_rectification_filed_before_the_person_exists_is_applied_once_they_do(
    cdp_env: CdpEnv,
) -> None:
    rt = cdp_env.runtime
    rid = _file(rt, "rectification", "early@example.org", corrections={"city": "Braga"})
    assert _payload_kinds(rt) == ["corrections"]  # kept, under the request's own key
    assert rt.vault.has_key(rid)
    sid = make_subject(
        rt, pii={"city": "Porto"}, identities={IdentityKind.EMAIL: "early@example.org"}
    )
    done = _run(rt, rid)
    assert done.status == "completed" and done.subject_id == sid
    assert done.outcome == {
        "subject_found": True,
        "rectified_fields": ["city"],
        "destinations_to_notify": [],
    }
    assert rt.vault.decrypt_fields(sid, read_pii(rt, sid)) == {"city": "Braga"}
    assert _payload_kinds(rt) == [] and not rt.vault.has_key(rid)
    log = AuditLogRow.__table__  # type: ignore[attr-defined]
    with rt.data_engine.connect() as conn:
        audit = [
            (r.action, json.loads(r.subject_ids))
            for r in conn.execute(sa.select(log).order_by(log.c.seq))
        ]
    assert audit == [("lookup:email", []), ("lookup:email", [sid]), ("write", [sid])]


def test_corrections_for_someone_never_found_are_discarded(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    nobody = _file(rt, "rectification", "never@example.org", corrections={"city": "Braga"})
    refused = _file(rt, "rectification", "refused@example.org", corrections={"city": "Faro"})
    assert _run(rt, nobody).outcome == {"subject_found": False}
    request_lifecycle.reject(runtime=rt, request_id=refused, actor="dpo-1", reason="not the person")
    assert _payload_kinds(rt) == []
    assert not rt.vault.has_key(nobody) and not rt.vault.has_key(refused)


def test_a_restriction_filed_before_the_person_exists_can_be_lifted(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    rid = _file(rt, "restriction", "later@example.org")
    sid = make_subject(rt, identities={IdentityKind.EMAIL: "later@example.org"})
    done = _run(rt, rid)
    assert done.subject_id == sid and is_restricted(runtime=rt, subject_id=sid)
    assert runner.lift_restriction(runtime=rt, ctx=ctx(), request_id=rid) == 1
    assert not is_restricted(runtime=rt, subject_id=sid)


def test_an_erasure_clears_the_identity_token_of_every_request_for_the_person(
    cdp_env: CdpEnv,
) -> None:
    rt = cdp_env.runtime
    earlier = _file(rt, "access", "erase.me@example.org")
    assert _run(rt, earlier).outcome == {"subject_found": False}  # nobody then
    rid = _file(rt, "erasure", "erase.me@example.org")
    sid = make_subject(rt, identities={IdentityKind.EMAIL: "erase.me@example.org"})
    done = _run(rt, rid)
    assert done.outcome is not None and done.outcome["keys_shredded"] == 1
    assert done.subject_id is None and not rt.vault.has_key(sid)
    with rt.data_engine.connect() as conn:
        rows = conn.execute(sa.select(REQUESTS.c.id, REQUESTS.c.identity_token)).all()
    assert {r.id for r in rows} == {earlier, rid}
    assert all(r.identity_token is None for r in rows)


@pytest.mark.parametrize("dry_run", [True, False])
def test_retention_sees_an_open_request_filed_before_the_person_existed(
    cdp_env: CdpEnv, dry_run: bool
) -> None:
    rt = cdp_env.runtime
    _file(rt, "access", "idle@example.org")
    sid = make_subject(rt, identities={IdentityKind.EMAIL: "idle@example.org"})
    other = make_subject(rt)  # as idle, no request: retention erases it
    later = FrozenClock(datetime.now(UTC) + timedelta(days=rt.settings.retention_inactive_days + 1))
    report = run_retention(runtime=rt, clock=later, dry_run=dry_run)
    assert report.inactive_subjects == 1
    subjects = Subject.__table__  # type: ignore[attr-defined]
    with rt.data_engine.connect() as conn:
        left = set(conn.execute(sa.select(subjects.c.id)).scalars())
    assert left == ({sid, other} if dry_run else {sid})


def test_a_rectification_run_again_after_its_corrections_were_applied_completes(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The corrections and a step naming their fields commit together: a run that stopped before
    completing the request finds that step when run again, and completes."""
    rt = cdp_env.runtime
    sid = make_subject(rt, pii={"city": "Porto"}, identities={IdentityKind.EMAIL: "re@example.org"})
    rid = request_filing.create(
        runtime=rt,
        ctx=ctx(),
        type="rectification",
        identity_kind="email",
        identity_value="re@example.org",
        corrections={"city": "Braga"},
    ).id
    request_lifecycle.verify(runtime=rt, request_id=rid, actor="dpo-1")

    def lost(*args: object, **kw: object) -> None:
        raise RuntimeError("connection lost")

    monkeypatch.setattr(request_lifecycle, "complete", lost)
    with pytest.raises(RuntimeError):
        runner.run(runtime=rt, ctx=ctx(), request_id=rid)
    monkeypatch.undo()
    assert rt.vault.decrypt_fields(sid, read_pii(rt, sid)) == {"city": "Braga"}
    assert _payload_kinds(rt) == []
    done = runner.run(runtime=rt, ctx=ctx(), request_id=rid)
    assert done.status == "completed"
    assert done.outcome == {
        "subject_found": True,
        "rectified_fields": ["city"],
        "destinations_to_notify": [],
    }
    assert [s.note for s in done.steps][-4:] == [
        "corrections applied: city",
        "failed: internal_error",
        "run again",
        None,
    ]
