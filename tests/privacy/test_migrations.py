"""The privacy migrations after 0011 round-trip without losing a request, a step or a payload
(on SQLite a table rebuild with foreign keys on would cascade the children away)."""

from __future__ import annotations

import sqlalchemy as sa

from cdp.crypto.normalize import IdentityKind
from cdp.db import migrate
from cdp.privacy import request_filing, request_lifecycle, runner
from tests.conftest import CdpEnv
from tests.factories import make_subject
from tests.privacy.test_requests import ctx


def _rows(env: CdpEnv) -> dict[str, list[tuple[object, ...]]]:
    with env.runtime.data_engine.connect() as conn:
        return {
            table: sorted(tuple(r) for r in conn.execute(sa.text(f"SELECT {cols} FROM {table}")))
            for table, cols in (
                ("privacy_requests", "id, status, subject_id, identity_token, outcome"),
                ("privacy_request_events", "id, request_id, status, note"),
                ("privacy_payloads", "request_id, kind, subject_id, ciphertext"),
            )
        }


def test_the_privacy_migrations_round_trip_keeping_every_row(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    make_subject(
        rt, pii={"email": "mig@example.org"}, identities={IdentityKind.EMAIL: "mig@example.org"}
    )
    served = request_filing.create(
        runtime=rt,
        ctx=ctx(),
        type="access",
        identity_kind="email",
        identity_value="mig@example.org",
    )
    request_lifecycle.verify(runtime=rt, request_id=served.id, actor="dpo-1")
    runner.run(runtime=rt, ctx=ctx(), request_id=served.id)
    request_filing.create(
        runtime=rt,
        ctx=ctx(),
        type="rectification",
        identity_kind="email",
        identity_value="mig@example.org",
        corrections={"city": "Braga"},
    )
    before = _rows(cdp_env)
    assert len(before["privacy_payloads"]) == 2 and len(before["privacy_request_events"]) == 5
    migrate.downgrade(rt.data_engine, "data", "0011")
    assert _rows(cdp_env) == before
    migrate.upgrade(rt.data_engine, "data")
    assert _rows(cdp_env) == before
    assert migrate.current_revisions(rt.data_engine, "data") == migrate.head_revisions("data")
