"""Rectification against the rest of the platform: erased people's identities stay theirs."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from cdp.crypto.normalize import IdentityKind
from cdp.db.models import Identity
from cdp.errors import ConflictError
from cdp.privacy import request_filing, request_lifecycle, requests, runner
from cdp.privacy.erasure import erase_subject
from tests.conftest import CdpEnv
from tests.factories import make_subject, read_pii
from tests.privacy.test_requests import ctx


def _identities(env: CdpEnv, sid: str) -> list[tuple[str, str]]:
    ident = Identity.__table__  # type: ignore[attr-defined]
    with env.runtime.data_engine.connect() as conn:
        rows = conn.execute(
            sa.select(ident.c.kind, ident.c.token).where(ident.c.subject_id == sid)
        ).all()
    return sorted((r.kind, r.token) for r in rows)


@pytest.mark.parametrize(
    ("field", "erased_value", "given"),
    [
        ("email", "gone@example.org", " Gone@Example.ORG "),
        ("phone", "+14155550177", "(415) 555-0177"),
    ],
)
def test_a_correction_never_gives_a_live_customer_an_erased_persons_identity(
    cdp_env: CdpEnv, field: str, erased_value: str, given: str
) -> None:
    rt = cdp_env.runtime
    gone = make_subject(rt, identities={IdentityKind(field): erased_value})
    erase_subject(runtime=rt, subject_id=gone)  # leaves a tombstone of the identity
    live = make_subject(
        rt, pii={"city": "Porto"}, identities={IdentityKind.EMAIL: "live@example.org"}
    )
    before_pii, before_ids = read_pii(rt, live), _identities(cdp_env, live)
    view = request_filing.create(
        runtime=rt,
        type="rectification",
        identity_kind="email",
        identity_value="live@example.org",
        ctx=ctx(),
        corrections={field: given, "city": "Braga"},
    )
    request_lifecycle.verify(runtime=rt, request_id=view.id, actor="dpo-1")
    with pytest.raises(ConflictError) as caught:
        runner.run(runtime=rt, ctx=ctx(), request_id=view.id)
    assert "erased" in str(caught.value)
    assert erased_value not in str(caught.value) and given.strip() not in str(caught.value)
    # nothing changed: neither the identity nor the other corrected field
    assert read_pii(rt, live) == before_pii and _identities(cdp_env, live) == before_ids
    with rt.data_engine.connect() as conn:
        assert request_filing.find_subject(rt, conn, IdentityKind(field), erased_value)[0] is None
    after = requests.get(runtime=rt, request_id=view.id)
    assert after.status == "in_progress" and after.steps[-1].note == "failed: conflict"
