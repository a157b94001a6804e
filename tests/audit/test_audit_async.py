"""audited_read_async and the group committer's async waiters: the same contract as audited_read
(record durable before the result, a failing body recorded as an error, a failed audit write
fails the read), and concurrent requests batched into one linear chain."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from cdp.audit.service import AuditScope, audited_read_async
from cdp.audit.verify import verify_chain
from cdp.audit.writer import LOG, append
from cdp.errors import AuditWriteError, NotFoundError
from tests.audit.factories import make_ctx, make_entry
from tests.conftest import CdpEnv
from tests.factories import make_subject


def _rows(env: CdpEnv) -> list[sa.Row[tuple[object, ...]]]:
    with env.runtime.data_engine.connect() as conn:
        return list(conn.execute(sa.select(LOG).order_by(LOG.c.seq)).all())


def test_async_read_returns_after_its_record(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt, {"email": "a@example.com"})
    seen: list[int] = []

    def body(scope: AuditScope) -> str:
        scope.conn.execute(sa.text("SELECT 1"))
        scope.returned(subject_ids=[sid], fields=["email"])
        return "data"

    async def read() -> str:
        result = await audited_read_async(
            body, runtime=rt, ctx=make_ctx(), action="read", resource="profile"
        )
        seen.append(len(_rows(cdp_env)))  # the record is committed before the result is back
        return result

    assert asyncio.run(read()) == "data"
    assert seen == [1]
    row = _rows(cdp_env)[0]
    assert (row.outcome, row.subject_ids, row.fields) == ("allowed", f'["{sid}"]', '["email"]')


def test_async_failing_body_records_error(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt)

    def body(scope: AuditScope) -> None:
        raise NotFoundError("no such subject")

    with pytest.raises(NotFoundError):
        asyncio.run(
            audited_read_async(
                body,
                runtime=rt,
                ctx=make_ctx(),
                action="read",
                resource="profile",
                subject_ids=[sid],
            )
        )
    assert [(r.outcome, r.subject_ids) for r in _rows(cdp_env)] == [("error", f'["{sid}"]')]


def test_async_audit_failure_fails_the_read(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cdp.audit.service as service

    def broken(*_a: object, **_k: object) -> None:
        raise sa.exc.OperationalError("INSERT", {}, Exception("disk full"))

    monkeypatch.setattr(service, "append", broken)

    def body(scope: AuditScope) -> str:
        scope.returned(fields=["email"])
        return "data"

    with pytest.raises(AuditWriteError):
        asyncio.run(
            audited_read_async(
                body, runtime=cdp_env.runtime, ctx=make_ctx(), action="read", resource="profile"
            )
        )
    assert _rows(cdp_env) == []


def test_concurrent_async_reads_make_one_linear_chain(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime

    def body(scope: AuditScope) -> int:
        return 1

    async def many() -> list[int]:
        return await asyncio.gather(
            *(
                audited_read_async(
                    body, runtime=rt, ctx=make_ctx(), action="read", resource="profile"
                )
                for _ in range(50)
            )
        )

    assert sum(asyncio.run(many())) == 50
    rows = _rows(cdp_env)
    assert [r.seq for r in rows] == list(range(1, 51))
    assert verify_chain(runtime=rt).ok


def test_appended_values_read_back_as_written(cdp_env: CdpEnv) -> None:
    """The append's statements (raw DBAPI on SQLite) store what SQLAlchemy would store."""
    at = datetime(2026, 3, 1, 12, 30, 5, 123456, tzinfo=UTC)
    entry = make_entry(roles=("support", "dpo"), subject_ids=("a" * 32, "b" * 32))
    with cdp_env.runtime.data_engine.begin() as conn:
        (record,) = append(conn, [entry], clock=lambda: at)
    row = _rows(cdp_env)[0]
    assert row.at == at and row.hash == record.hash and row.roles == "support,dpo"
    with cdp_env.runtime.data_engine.connect() as conn:
        linked = conn.execute(sa.text("SELECT subject_id FROM audit_subjects ORDER BY 1")).all()
        if conn.dialect.name == "sqlite":  # the text form SQLAlchemy's DateTime writes
            raw = conn.execute(sa.text("SELECT at FROM audit_log")).scalar_one()
            assert raw == "2026-03-01 12:30:05.123456"
    assert [r[0] for r in linked] == ["a" * 32, "b" * 32]
    assert verify_chain(runtime=cdp_env.runtime).ok
