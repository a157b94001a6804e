"""The request lifecycle under time and concurrency: extensions, claims, listing."""

from __future__ import annotations

import secrets
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from cdp.audit.writer import LOG
from cdp.clock import FrozenClock
from cdp.crypto.normalize import IdentityKind
from cdp.errors import ConflictError, InvalidInputError
from cdp.privacy import request_filing, request_lifecycle, request_list, requests, runner
from cdp.privacy.models import PrivacyRequest
from tests.conftest import CdpEnv
from tests.factories import make_subject
from tests.privacy.test_requests import ctx


def _file(env: CdpEnv, kind: str = "access", clock: FrozenClock | None = None) -> str:
    extra = {"clock": clock} if clock is not None else {}
    return request_filing.create(
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
    done = request_lifecycle.extend(
        runtime=rt, request_id=in_time, actor="dpo-1", reason="x", clock=clock
    )
    assert done.deadline == datetime(2027, 4, 28, 9, 0, tzinfo=UTC)
    clock.advance(seconds=1)
    with pytest.raises(ConflictError) as caught:
        request_lifecycle.extend(
            runtime=rt, request_id=late, actor="dpo-1", reason="volume", clock=clock
        )
    assert "2027-02-28" in str(caught.value) and "12(3)" in str(caught.value)
    view = requests.get(runtime=rt, request_id=late)
    assert view.extended_until is None and [s.status for s in view.steps] == ["received"]


def _verified(env: CdpEnv, kind: str, email: str, **kw: object) -> str:
    rid = request_filing.create(
        runtime=env.runtime,
        ctx=ctx(),
        type=kind,
        identity_kind="email",
        identity_value=email,
        **kw,  # type: ignore[arg-type]
    ).id
    request_lifecycle.verify(runtime=env.runtime, request_id=rid, actor="dpo-1")
    return rid


def test_a_running_request_cannot_be_rejected_extended_or_run_twice(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt, identities={IdentityKind.EMAIL: "busy@example.org"})
    rid = _verified(cdp_env, "erasure", "busy@example.org")
    refused: list[str] = []
    erase = runner.HANDLERS["erasure"]

    def meanwhile(*args: Any) -> dict[str, Any]:
        for attempt in (
            lambda: request_lifecycle.reject(
                runtime=rt, request_id=rid, actor="dpo-2", reason="no"
            ),
            lambda: request_lifecycle.extend(
                runtime=rt, request_id=rid, actor="dpo-2", reason="slow"
            ),
            lambda: runner.run(runtime=rt, ctx=ctx(), request_id=rid),
        ):
            with pytest.raises(ConflictError) as caught:
                attempt()
            refused.append(str(caught.value))
        return erase(*args)

    monkeypatch.setitem(runner.HANDLERS, "erasure", meanwhile)
    done = runner.run(runtime=rt, ctx=ctx(), request_id=rid)
    assert len(refused) == 3 and all("is being run" in m for m in refused)
    assert done.status == "completed" and done.outcome is not None
    assert done.outcome["keys_shredded"] == 1 and not rt.vault.has_key(sid)
    assert done.extended_until is None
    assert [s.status for s in done.steps] == ["received", "verified", "in_progress", "completed"]
    with pytest.raises(ConflictError):
        request_lifecycle.reject(runtime=rt, request_id=rid, actor="dpo-2", reason="late")


def test_runs_and_a_rejection_at_once_never_reject_a_carried_out_erasure(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt, identities={IdentityKind.EMAIL: "race@example.org"})
    rid = _verified(cdp_env, "erasure", "race@example.org")
    start = threading.Barrier(5)
    results: dict[str, list[str]] = {"run": [], "reject": []}

    def attempt(kind: str) -> None:
        start.wait()
        try:
            if kind == "run":
                runner.run(runtime=rt, ctx=ctx(), request_id=rid)
            else:
                request_lifecycle.reject(runtime=rt, request_id=rid, actor="dpo-2", reason="no")
            results[kind].append("ok")
        except ConflictError:
            results[kind].append("conflict")

    threads = [threading.Thread(target=attempt, args=(k,)) for k in ["run"] * 4 + ["reject"]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    view = requests.get(runtime=rt, request_id=rid)
    runs_ok = results["run"].count("ok")
    if view.status == "completed":
        assert runs_ok == 1 and results["reject"] == ["conflict"]
        assert view.outcome is not None and view.outcome["keys_shredded"] == 1
        assert not rt.vault.has_key(sid)
    else:  # the rejection came first: nothing was run
        assert view.status == "rejected" and runs_ok == 0 and results["reject"] == ["ok"]
        assert view.outcome is None and rt.vault.has_key(sid)
    assert sorted(results["run"] + results["reject"]).count("ok") == 1


def test_a_failed_run_releases_the_request(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a failure the request is in_progress and free: it can be run again, or rejected
    unless it is an erasure (which may have shredded the key before failing)."""
    rt = cdp_env.runtime
    make_subject(rt, identities={IdentityKind.EMAIL: "fails@example.org"})
    rectification = _verified(
        cdp_env, "rectification", "fails@example.org", corrections={"city": "Braga"}
    )
    erasure = _verified(cdp_env, "erasure", "fails@example.org")

    def broken(*args: Any) -> dict[str, Any]:
        raise ConflictError("the store said no")

    for kind in ("rectification", "erasure"):
        monkeypatch.setitem(runner.HANDLERS, kind, broken)
    for rid in (rectification, erasure):
        with pytest.raises(ConflictError):
            runner.run(runtime=rt, ctx=ctx(), request_id=rid)
        view = requests.get(runtime=rt, request_id=rid)
        assert view.status == "in_progress" and view.steps[-1].note == "failed: conflict"
    with pytest.raises(ConflictError) as caught:
        request_lifecycle.reject(
            runtime=rt, request_id=erasure, actor="dpo-1", reason="changed mind"
        )
    assert "run it again" in str(caught.value)
    rejected = request_lifecycle.reject(
        runtime=rt, request_id=rectification, actor="dpo-1", reason="x"
    )
    assert rejected.status == "rejected"
    monkeypatch.undo()
    done = runner.run(runtime=rt, ctx=ctx(), request_id=erasure)  # resumes
    assert done.status == "completed" and done.steps[-2].note == "run again"


def test_a_claim_left_by_a_killed_run_lapses(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    make_subject(rt, identities={IdentityKind.EMAIL: "killed@example.org"})
    rid = _verified(cdp_env, "restriction", "killed@example.org")
    clock = FrozenClock(datetime.now(UTC))
    with rt.data_engine.begin() as conn:  # a run took it, then its process died
        request_lifecycle.claim(conn, rid, actor="dpo-1", now=clock())
    with pytest.raises(ConflictError):
        runner.run(runtime=rt, ctx=ctx(), request_id=rid, clock=clock)
    clock.advance(seconds=request_lifecycle.CLAIM_LEASE.total_seconds() + 1)
    done = runner.run(runtime=rt, ctx=ctx(), request_id=rid, clock=clock)
    assert done.status == "completed"


def _bulk(env: CdpEnv, n: int, status: str, due: datetime) -> list[str]:
    ids = ["pr_" + secrets.token_hex(12) for _ in range(n)]
    rows = [
        {
            "id": rid,
            "type": "access",
            "status": status,
            "identity_kind": "email",
            "received_at": due - timedelta(days=30),
            "due_at": due,
            "requested_by": "dpo-1",
        }
        for rid in ids
    ]
    with env.runtime.data_engine.begin() as conn:
        conn.execute(sa.insert(PrivacyRequest.__table__), rows)  # type: ignore[attr-defined]
    return ids


def test_overdue_requests_are_found_past_any_number_of_closed_ones(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    closed = _bulk(cdp_env, 600, "completed", datetime(2026, 1, 1, tzinfo=UTC))
    late = _bulk(cdp_env, 3, "received", datetime(2026, 6, 1, tzinfo=UTC))
    _bulk(cdp_env, 2, "verified", datetime(2026, 8, 1, tzinfo=UTC))  # not due yet
    now = FrozenClock(datetime(2026, 7, 1, tzinfo=UTC))
    overdue = request_list.list_requests(runtime=rt, overdue_only=True, clock=now)
    assert sorted(v.id for v in overdue.items) == sorted(late) and overdue.next_cursor is None
    first = request_list.list_requests(runtime=rt)
    assert len(first.items) == request_list.DEFAULT_PAGE_SIZE and first.next_cursor is not None
    seen: list[requests.RequestView] = []
    cursor = None
    while True:
        page = request_list.list_requests(
            runtime=rt, limit=request_list.MAX_PAGE_SIZE, cursor=cursor
        )
        seen.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == len({v.id for v in seen}) == 605
    assert set(closed) <= {v.id for v in seen}
    keys = [(v.deadline, v.id) for v in seen]
    assert keys == sorted(keys)
    for bad in ({"limit": 0}, {"limit": request_list.MAX_PAGE_SIZE + 1}, {"cursor": "x"}):
        with pytest.raises(InvalidInputError):
            request_list.list_requests(runtime=rt, **bad)  # type: ignore[arg-type]


def test_the_list_pages_over_http_and_on_the_command_line(cdp_env: CdpEnv) -> None:
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from cdp.api.app import create_app
    from cdp.cli import app
    from tests.audit.factories import make_principal

    rt = cdp_env.runtime
    _bulk(cdp_env, 600, "completed", datetime(2020, 1, 1, tzinfo=UTC))
    late = _bulk(cdp_env, 3, "received", datetime(2020, 6, 1, tzinfo=UTC))
    token = make_principal(rt, ["dpo"]).token
    headers = {"Authorization": f"Bearer {token}", "X-Purpose": "privacy_request"}
    with TestClient(create_app()) as client:
        r = client.get("/v1/privacy-requests?overdue=true", headers=headers)
        assert r.status_code == 200, r.text
        assert sorted(x["id"] for x in r.json()["items"]) == sorted(late)
        r = client.get("/v1/privacy-requests?overdue=true&limit=1", headers=headers)
        assert [x["id"] for x in r.json()["items"]] == sorted(late)[:1]
        got: list[str] = []
        url = "/v1/privacy-requests?limit=500"
        while True:
            r = client.get(url, headers=headers)
            assert r.status_code == 200, r.text
            got.extend(x["id"] for x in r.json()["items"])
            if r.json()["next_cursor"] is None:
                break
            url = f"/v1/privacy-requests?limit=500&cursor={r.json()['next_cursor']}"
        assert len(got) == len(set(got)) == 603
        for query in ("limit=0", "limit=501", "cursor=nope", "status=lost"):
            assert client.get(f"/v1/privacy-requests?{query}", headers=headers).status_code == 422
    auth = ["--token", token, "--purpose", "privacy_request"]
    cli = CliRunner()
    shown = cli.invoke(app, ["privacy", "list", "--overdue", *auth])
    assert shown.exit_code == 0, shown.output
    assert all(rid in shown.output for rid in late) and "more follow" not in shown.output
    cut = cli.invoke(app, ["privacy", "list", "--limit", "2", *auth])
    assert cut.exit_code == 0 and "more follow" in cut.output and "--cursor" in cut.output
    records = _audit_records(cdp_env)
    lost = cli.invoke(app, ["privacy", "list", "--status", "lost", *auth])
    assert lost.exit_code == 2 and "lost" in lost.output, lost.output  # a usage error
    # refused before any read, as the API's 422 is: nothing to record (it was an error record)
    assert _audit_records(cdp_env) == records


def _audit_records(env: CdpEnv) -> int:
    with env.runtime.data_engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(LOG)).scalar_one())
