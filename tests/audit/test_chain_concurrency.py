"""The chain stays linear under concurrent writers: threads and processes, SQLite and PostgreSQL;
profile reads during policy reloads match the old or the new policy, never a mix."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cdp.access.engine import get_policy_engine, reset_policy_engine
from cdp.audit.service import audited_read, record_access
from cdp.audit.verify import verify_chain
from cdp.audit.writer import LOG
from cdp.profiles.reads import get_profile
from tests.audit.factories import make_ctx
from tests.conftest import CdpEnv
from tests.factories import make_subject

THREADS = 8
PER_THREAD = 25
REPO_POLICIES = Path(__file__).resolve().parents[2] / "policies"


def _seqs(env: CdpEnv) -> list[int]:
    with env.runtime.data_engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.select(LOG.c.seq).order_by(LOG.c.seq))]


def test_threads_extend_one_linear_chain(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt, {"email": "t@example.com"})
    start = threading.Barrier(THREADS)

    def work(n: int) -> None:
        ctx = make_ctx(name=f"worker{n}")
        start.wait()
        for i in range(PER_THREAD):
            if i % 2:
                record_access(
                    runtime=rt, ctx=ctx, action="read", resource="profile", outcome="denied"
                )
            else:
                with audited_read(runtime=rt, ctx=ctx, action="read", resource="profile") as s:
                    s.conn.execute(sa.text("SELECT 1"))
                    s.returned(subject_ids=[sid], fields=["email"])

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(work, range(THREADS)))
    total = THREADS * PER_THREAD
    assert _seqs(cdp_env) == list(range(1, total + 1))
    result = verify_chain(runtime=rt)
    assert result.ok, result.problem
    assert result.records == total


def _process_writer(env_vars: dict[str, str], count: int, barrier: Any) -> None:
    os.environ.update(env_vars)
    from cdp.runtime import get_runtime

    rt = get_runtime()
    ctx = make_ctx(name=f"proc{os.getpid()}")
    barrier.wait()
    for _ in range(count):
        record_access(runtime=rt, ctx=ctx, action="read", resource="profile", outcome="allowed")


def test_two_processes_extend_one_linear_chain(cdp_env: CdpEnv) -> None:
    env_vars = {k: v for k, v in os.environ.items() if k.startswith("CDP_")}
    mp = multiprocessing.get_context("spawn")
    barrier = mp.Barrier(2)
    procs = [mp.Process(target=_process_writer, args=(env_vars, 40, barrier)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert _seqs(cdp_env) == list(range(1, 81))
    assert verify_chain(runtime=cdp_env.runtime).ok
    with cdp_env.runtime.data_engine.connect() as conn:
        names = {r[0] for r in conn.execute(sa.select(LOG.c.principal_name).distinct())}
    assert len(names) == 2


def test_reads_during_policy_reload_match_old_or_new_policy(
    cdp_env: CdpEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy_dir = tmp_path / "policies"
    shutil.copytree(REPO_POLICIES, policy_dir)
    with_contact = (policy_dir / "policy.csv").read_text()
    without_contact = with_contact.replace("p, support, pii:contact, read, support, allow\n", "")
    assert without_contact != with_contact
    monkeypatch.setenv("CDP_POLICY_DIR", str(policy_dir))
    cdp_env.reopen()
    reset_policy_engine()
    rt = cdp_env.runtime
    try:
        sid = make_subject(rt, {"email": "r@example.com", "first_name": "Rita"})
        old = {"subject_id", "created_at", "identity_kinds", "email"}
        new = {"subject_id", "created_at", "identity_kinds"}
        seen: list[frozenset[str]] = []
        stop = threading.Event()

        def reader() -> None:
            ctx = make_ctx(["support"], purpose="support")
            while not stop.is_set():
                view = get_profile(runtime=rt, ctx=ctx, subject_id=sid)
                seen.append(frozenset(view.shown()))

        threads = [threading.Thread(target=reader) for _ in range(THREADS)]
        for t in threads:
            t.start()
        engine = get_policy_engine()
        for i in range(20):
            (policy_dir / "policy.csv").write_text(without_contact if i % 2 == 0 else with_contact)
            engine.reload()
        stop.set()
        for t in threads:
            t.join()
        assert seen
        assert {s for s in seen} <= {frozenset(old), frozenset(new)}
        assert verify_chain(runtime=rt).ok
        assert len(_seqs(cdp_env)) == len(seen)
    finally:
        reset_policy_engine()
