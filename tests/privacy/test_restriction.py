"""Lifting a restriction: only through a completed restriction request, only the one it opened."""

from __future__ import annotations

import pytest

from cdp.crypto.normalize import IdentityKind
from cdp.errors import ConflictError
from cdp.privacy import request_filing, request_lifecycle, requests, runner
from cdp.privacy.restriction import is_restricted
from cdp.runtime import Runtime
from tests.conftest import CdpEnv
from tests.factories import make_subject
from tests.privacy.test_requests import ctx


def _filed(rt: Runtime, kind: str, email: str) -> str:
    view = request_filing.create(
        runtime=rt, ctx=ctx(), type=kind, identity_kind="email", identity_value=email
    )
    request_lifecycle.verify(runtime=rt, request_id=view.id, actor="dpo-1")
    return view.id


def test_a_lift_ends_only_the_restriction_its_request_opened(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt, identities={IdentityKind.EMAIL: "twice@example.org"})
    first, second = (_filed(rt, "restriction", "twice@example.org") for _ in range(2))
    assert runner.run(runtime=rt, ctx=ctx(), request_id=first).outcome == {
        "subject_found": True,
        "restricted": True,
        "already_restricted": False,
    }
    assert runner.run(runtime=rt, ctx=ctx(), request_id=second).outcome == {
        "subject_found": True,
        "restricted": True,
        "already_restricted": True,
    }
    assert runner.lift_restriction(runtime=rt, ctx=ctx(), request_id=first) == 1
    assert is_restricted(runtime=rt, subject_id=sid)  # the second request's restriction holds
    with pytest.raises(ConflictError) as caught:
        runner.lift_restriction(runtime=rt, ctx=ctx(), request_id=first)
    assert "not in force" in str(caught.value)
    assert runner.lift_restriction(runtime=rt, ctx=ctx(), request_id=second) == 1
    assert not is_restricted(runtime=rt, subject_id=sid)
    notes = [s.note for s in requests.get(runtime=rt, request_id=first).steps]
    assert notes.count("lifted") == 1


def test_only_a_completed_restriction_request_lifts(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt, identities={IdentityKind.EMAIL: "held@example.org"})
    done = _filed(rt, "restriction", "held@example.org")
    runner.run(runtime=rt, ctx=ctx(), request_id=done)
    pending = _filed(rt, "restriction", "held@example.org")  # verified, never run
    other = _filed(rt, "access", "held@example.org")
    for rid, why in ((pending, "verified"), (other, "not a restriction")):
        with pytest.raises(ConflictError) as caught:
            runner.lift_restriction(runtime=rt, ctx=ctx(), request_id=rid)
        assert why in str(caught.value)
        assert is_restricted(runtime=rt, subject_id=sid)  # nothing lifted
    assert runner.lift_restriction(runtime=rt, ctx=ctx(), request_id=done) == 1
    assert not is_restricted(runtime=rt, subject_id=sid)
