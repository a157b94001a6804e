"""The request lifecycle under time and concurrency: extensions, claims, listing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cdp.clock import FrozenClock
from cdp.errors import ConflictError
from cdp.privacy import requests
from tests.conftest import CdpEnv
from tests.privacy.test_requests import ctx


def _file(env: CdpEnv, kind: str = "access", clock: FrozenClock | None = None) -> str:
    extra = {"clock": clock} if clock is not None else {}
    return requests.create(
        runtime=env.runtime,
        ctx=ctx(),
        type=kind,
        identity_kind="email",
        identity_value="someone@example.org",
        **extra,  # type: ignore[arg-type]
    ).id


def test_an_extension_is_refused_once_the_original_deadline_has_passed(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    clock = FrozenClock(datetime(2027, 1, 31, 9, 0, tzinfo=UTC))
    late, in_time = _file(cdp_env, clock=clock), _file(cdp_env, clock=clock)
    clock.advance(days=28)  # 2027-02-28 09:00: the due date itself is still in time
    done = requests.extend(runtime=rt, request_id=in_time, actor="dpo-1", reason="x", clock=clock)
    assert done.deadline == datetime(2027, 4, 28, 9, 0, tzinfo=UTC)
    clock.advance(seconds=1)
    with pytest.raises(ConflictError) as caught:
        requests.extend(runtime=rt, request_id=late, actor="dpo-1", reason="volume", clock=clock)
    assert "2027-02-28" in str(caught.value) and "12(3)" in str(caught.value)
    view = requests.get(runtime=rt, request_id=late)
    assert view.extended_until is None and [s.status for s in view.steps] == ["received"]
