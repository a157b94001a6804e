"""A choice recorded through a door and its audit record commit together: when the audit log
cannot be written, the choice is not kept either (it used to be committed first, then audited)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

import cdp.audit.service as audit_service
from cdp.audit.writer import LOG
from cdp.consent.models import ConsentEvent
from cdp.consent.recording import record_choice
from cdp.errors import AuditWriteError
from tests.audit.factories import make_ctx
from tests.conftest import CdpEnv
from tests.factories import make_subject

CONSENT = ConsentEvent.__table__  # type: ignore[attr-defined]
AT = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _counts(env: CdpEnv, sid: str) -> tuple[int, int]:
    with env.runtime.data_engine.connect() as conn:
        choices = conn.execute(
            sa.select(sa.func.count()).select_from(CONSENT).where(CONSENT.c.subject_id == sid)
        ).scalar_one()
        records = conn.execute(sa.select(sa.func.count()).select_from(LOG)).scalar_one()
    return int(choices), int(records)


def _choose(env: CdpEnv, sid: str, status: str) -> None:
    record_choice(
        runtime=env.runtime,
        ctx=make_ctx(("dpo",), purpose="compliance"),
        subject_id=sid,
        purpose="email_marketing",
        status=status,
        occurred_at=AT,
        source="support-desk",
        mechanism="api",
    )


def test_a_choice_the_audit_log_cannot_record_is_not_kept(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = make_subject(cdp_env.runtime)
    before = _counts(cdp_env, sid)

    def broken(*_a: object, **_k: object) -> None:
        raise sa.exc.OperationalError("INSERT", {}, Exception("disk full"))

    monkeypatch.setattr(audit_service, "append", broken)
    with pytest.raises(AuditWriteError):
        _choose(cdp_env, sid, "granted")
    assert _counts(cdp_env, sid) == before
    monkeypatch.undo()
    _choose(cdp_env, sid, "granted")  # the same choice goes in once the log can be written
    assert _counts(cdp_env, sid) == (before[0] + 1, before[1] + 1)
