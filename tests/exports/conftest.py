"""Shared helpers for export tests: principals, consenting subjects, a segment of everyone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from cdp.access.context import AccessContext
from cdp.access.principals import create as create_principal
from cdp.access.principals import get_by_name
from cdp.clock import FrozenClock
from cdp.consent.service import ConsentInput, record_consents
from cdp.errors import NotFoundError
from cdp.exports.destinations import DestinationSpec, create_destination
from cdp.exports.run import ExportResult, run_export
from cdp.runtime import Runtime
from cdp.segments.service import create_segment
from cdp.segments.views import SegmentIn
from tests.conftest import CdpEnv
from tests.factories import make_subject

EVERYONE = {"not": {"trait": {"name": "orders", "op": "lt", "value": 0}}}
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


@dataclass
class World:
    """One test's installation with a marketer and a segment named ``everyone``."""

    rt: Runtime
    clock: FrozenClock

    def ctx(
        self, purpose: str, roles: Sequence[str] = ("marketer",), name: str = "mia"
    ) -> AccessContext:
        """A context for principal ``name`` (created on first use) acting for ``purpose``."""
        try:
            p = get_by_name(runtime=self.rt, name=name)
        except NotFoundError:
            p = create_principal(
                runtime=self.rt, name=name, roles=list(roles), clock=self.clock
            ).principal
        return AccessContext(
            principal_id=p.id,
            principal_name=p.name,
            roles=p.roles,
            purpose=purpose,
            request_id="req-test",
            client="127.0.0.1",
        )

    def person(
        self,
        pii: Mapping[str, str],
        *,
        grants: Sequence[str] = ("email_marketing", "ad_audiences", "sms_marketing"),
    ) -> str:
        sid = make_subject(self.rt, pii)
        self.consent(sid, grants, "granted")
        return sid

    def consent(self, sid: str, purposes: Sequence[str], status: str) -> None:
        self.clock.advance(seconds=1)
        record_consents(
            runtime=self.rt,
            items=[
                ConsentInput(
                    subject_id=sid,
                    purpose=p,
                    status=status,
                    occurred_at=self.clock() - timedelta(milliseconds=1),
                    source="test",
                    mechanism="checkbox",
                    recorded_by="test",
                )
                for p in purposes
            ],
            clock=self.clock,
        )

    def runs(self) -> list[tuple[str, str, str | None]]:
        """(id, status, error code) of every export run, oldest first."""
        with self.rt.data_engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT id, status, error_code FROM export_runs ORDER BY started_at")
            )
            return [(r[0], r[1], r[2]) for r in rows]

    def staged(self) -> int:
        """How many staging rows exports left."""
        with self.rt.data_engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM export_staging")).scalar_one())

    def export_email(self, destination: str = "mail", *, full: bool = False) -> ExportResult:
        """A minute later, export ``everyone`` to ``destination`` for ``email_marketing``."""
        self.clock.advance(minutes=1)
        return run_export(
            runtime=self.rt,
            ctx=self.ctx("email_marketing"),
            segment="everyone",
            destination=destination,
            clock=self.clock,
            full=full,
        )

    def destination(self, name: str, kind: str, purpose: str, fields: Sequence[str], **kw: object):  # type: ignore[no-untyped-def]
        spec = DestinationSpec(name=name, kind=kind, purpose=purpose, fields=list(fields), **kw)  # type: ignore[arg-type]
        return create_destination(runtime=self.rt, spec=spec, created_by="admin", clock=self.clock)


@pytest.fixture
def world(cdp_env: CdpEnv) -> World:
    clock = FrozenClock(T0)
    rt = cdp_env.runtime
    create_segment(
        runtime=rt, data=SegmentIn(name="everyone", rule=EVERYONE), actor="test", clock=clock
    )
    return World(rt, clock)
