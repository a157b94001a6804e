"""record_access and audited_read: records carry the fields, a failed audit write fails the read."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from cdp.audit.chain import GENESIS_HASH
from cdp.audit.service import audited_read, deny, record_access
from cdp.audit.writer import LOG
from cdp.errors import AuditWriteError, NotFoundError, PermissionDeniedError
from tests.audit.factories import make_ctx
from tests.conftest import CdpEnv
from tests.factories import make_subject


def _rows(env: CdpEnv) -> list[sa.Row[tuple[object, ...]]]:
    with env.runtime.data_engine.connect() as conn:
        return list(conn.execute(sa.select(LOG).order_by(LOG.c.seq)).all())


def test_record_access_chains_from_genesis(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    ctx = make_ctx()
    sid = make_subject(rt, {"email": "a@example.com"})
    first = record_access(
        runtime=rt,
        ctx=ctx,
        action="read",
        resource="profile",
        outcome="allowed",
        subject_ids=[sid],
        fields=["email"],
    )
    second = record_access(runtime=rt, ctx=ctx, action="read", resource="profile", outcome="denied")
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == GENESIS_HASH and second.prev_hash == first.hash
    rows = _rows(cdp_env)
    assert [r.seq for r in rows] == [1, 2]
    assert rows[0].subject_ids == f'["{sid}"]' and rows[0].fields == '["email"]'
    assert rows[0].principal_name == "tester" and rows[0].purpose == "support"


def test_audited_read_commits_read_and_record(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt, {"email": "a@example.com"})
    with audited_read(runtime=rt, ctx=make_ctx(), action="read", resource="profile") as scope:
        scope.conn.execute(sa.text("SELECT 1"))
        scope.returned(subject_ids=[sid], fields=["email"])
    assert scope.record is not None and scope.record.outcome == "allowed"
    assert len(_rows(cdp_env)) == 1


def test_failing_body_records_error(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt)
    with (
        pytest.raises(NotFoundError),
        audited_read(
            runtime=rt, ctx=make_ctx(), action="read", resource="profile", subject_ids=[sid]
        ),
    ):
        raise NotFoundError("no such subject")
    rows = _rows(cdp_env)
    assert [(r.outcome, r.subject_ids) for r in rows] == [("error", f'["{sid}"]')]


def test_audit_write_failure_fails_the_read(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = cdp_env.runtime
    import cdp.audit.service as service

    def broken(*_a: object, **_k: object) -> None:
        raise sa.exc.OperationalError("INSERT", {}, Exception("disk full"))

    monkeypatch.setattr(service, "append", broken)
    returned = []
    with (
        pytest.raises(AuditWriteError),
        audited_read(runtime=rt, ctx=make_ctx(), action="read", resource="profile") as s,
    ):
        s.returned(fields=["email"])
        returned.append("data")
    assert _rows(cdp_env) == []


def test_personal_values_are_refused(cdp_env: CdpEnv) -> None:
    with pytest.raises(ValueError):
        record_access(
            runtime=cdp_env.runtime,
            ctx=make_ctx(),
            action="read",
            resource="profile",
            outcome="allowed",
            subject_ids=["alice@example.com"],
        )
    with pytest.raises(ValueError):
        record_access(
            runtime=cdp_env.runtime,
            ctx=make_ctx(),
            action="read",
            resource="profile",
            outcome="allowed",
            fields=["Alice Smith"],
        )


def test_records_match_the_published_schema(cdp_env: CdpEnv) -> None:
    import json
    from pathlib import Path

    import jsonschema

    schema = json.loads(
        (Path(__file__).resolve().parents[2] / "audit/record.schema.json").read_text()
    )
    rt = cdp_env.runtime
    sid = make_subject(rt)
    record = record_access(
        runtime=rt,
        ctx=make_ctx(),
        action="lookup:email",
        resource="profile",
        outcome="allowed",
        subject_ids=[sid],
        fields=["subject_id", "email"],
    )
    jsonschema.validate(record.to_json(), schema)
    from cdp.audit.chain import chain_hash

    assert chain_hash(record.prev_hash, record.canonical()) == record.hash


def test_a_denial_leaves_out_an_id_with_a_trailing_newline(cdp_env: CdpEnv) -> None:
    """What a caller typed as a subject id is recorded only when it is a whole cdp id: an id
    with a trailing newline is left out (the denial is still recorded), not refused by the
    writer mid-denial."""
    sid = make_subject(cdp_env.runtime)
    err = deny(
        runtime=cdp_env.runtime,
        ctx=make_ctx(),
        action="read",
        resource="profile",
        subject_ids=[sid + "\n", sid],
    )
    assert isinstance(err, PermissionDeniedError)
    rows = _rows(cdp_env)
    assert [(r.outcome, r.subject_ids) for r in rows] == [("denied", f'["{sid}"]')]
