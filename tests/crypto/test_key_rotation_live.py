"""Rotating, re-wrapping and retiring a key-encryption key while other processes create data
keys: no data key is ever stored under a version that is or becomes retired.

The bug these guard against: a process kept the key file it read at start (current version
and every key), so after `cdp keys rotate`, `rewrap` and `retire 1` in the CLI a running server
wrapped its next new customer's data key under the destroyed version 1 — unreadable for good.
"""

from __future__ import annotations

import base64
import os
import subprocess
import threading
import uuid
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from cdp.crypto import provider as provider_module
from cdp.crypto.keystore_tables import data_keys, kek_usage
from cdp.db.models import new_subject_id
from cdp.errors import KeyMaterialError
from cdp.ingest.sources import create_source
from cdp.runtime import Runtime, open_runtime
from cdp.settings import get_settings
from tests.conftest import CdpEnv
from tests.crash.helpers import CLI, start_server
from tests.factories import read_pii


def _other_process() -> Runtime:
    """A runtime with its own key provider and key store, as another process has (the engines'
    pools are shared in this process, the key material and its caches are not)."""
    return open_runtime(get_settings())


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
        check=False,
    )


def _deks_per_version(rt: Runtime) -> dict[int, int]:
    return rt.keystore.deks_per_version()


def _all_keys_unwrap(rt: Runtime) -> int:
    with rt.key_engine.connect() as conn:
        ids = [r[0] for r in conn.execute(sa.select(data_keys.c.subject_id))]
    assert len(rt.keystore.unwrapped(ids)) == len(ids)
    return len(ids)


def test_a_running_server_wraps_under_the_current_version_after_rotate_rewrap_retire(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    """The reported reproduction, with real processes: `cdp serve`, identify u1, then
    `cdp keys rotate`, `rewrap`, `retire 1` in the CLI, then identify more customers. One
    worker, so that the process that read the key file before the rotation is the one that
    creates the next keys (each worker reads it at its first request)."""
    rt = cdp_env.runtime
    key = create_source(runtime=rt, name="web").write_key
    auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
    server, base = start_server(tmp_path / "server.log", workers=1)
    try:

        def identify(user: str) -> None:
            msg = {
                "userId": user,
                "traits": {"email": f"{user}@example.com"},
                "messageId": uuid.uuid4().hex,
            }
            r = httpx.post(f"{base}/v1/identify", json=msg, headers=auth, timeout=30)
            assert r.status_code == 200, r.text

        identify("u1")
        for args in (("keys", "rotate"), ("keys", "rewrap"), ("keys", "retire", "1")):
            done = _cli(*args)
            assert done.returncode == 0, done.stderr[-2000:]
        for i in range(2, 12):
            identify(f"u{i}")
    finally:
        server.terminate()
        server.wait(timeout=30)

    fresh = cdp_env.reopen()
    assert _deks_per_version(fresh) == {2: 11}
    assert _all_keys_unwrap(fresh) == 11
    with fresh.data_engine.connect() as conn:
        subjects = [r[0] for r in conn.execute(sa.text("SELECT id FROM subjects"))]
    emails = {fresh.vault.decrypt_fields(s, read_pii(fresh, s))["email"] for s in subjects}
    assert emails == {f"u{i}@example.com" for i in range(1, 12)}
    status = _cli("keys", "status")
    assert status.returncode == 0 and "warning" not in status.stdout
    assert _cli("keys", "rewrap").returncode == 0


def test_retire_racing_with_wraps_never_strands_a_key(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writers in a process that read the key file before the rotation, and never look at it
    again on their own (the once-a-second check is switched off): the key store alone must keep
    their keys off the retired version, whatever the interleaving with rewrap and retire."""
    monkeypatch.setattr(provider_module, "KEY_FILE_RECHECK_SECONDS", 3600.0)
    server = _other_process()
    server.keystore.create([new_subject_id()])
    assert server.provider.current_version() == 1
    admin = _other_process()
    stop = threading.Event()
    errors: list[BaseException] = []
    created: list[str] = []

    def writer() -> None:
        try:
            while not stop.is_set():
                ids = [new_subject_id() for _ in range(3)]
                server.keystore.create(ids)
                created.extend(ids)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        assert admin.provider.rotate() == 2
        retired = False
        for _ in range(20):
            admin.keystore.rewrap(batch_size=7)
            try:
                admin.keystore.retire(1)
            except KeyMaterialError:
                continue  # a key arrived under version 1 before rewrap closed it: again
            retired = True
            break
        assert retired
        before = len(created)
        while len(created) < before + 30 and not errors:  # keep writing after the retirement
            stop.wait(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not errors, errors
    fresh = cdp_env.reopen()
    per_version = _deks_per_version(fresh)
    assert 1 not in per_version, per_version
    assert _all_keys_unwrap(fresh) == len(created) + 1
    assert server.provider.current_version() == 2  # reloaded when the key store refused 1


def test_rewrap_closes_older_versions_for_processes_that_read_the_file_before(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(provider_module, "KEY_FILE_RECHECK_SECONDS", 3600.0)
    server = _other_process()
    first = new_subject_id()
    server.keystore.create([first])
    admin = _other_process()
    admin.provider.rotate()
    # between rotate and rewrap the old version still takes keys (rewrap will move them)
    early = new_subject_id()
    server.keystore.create([early])
    assert _deks_per_version(admin) == {1: 2}
    assert admin.keystore.rewrap() == 2
    late = new_subject_id()
    server.keystore.create([late])  # refused under 1 in its transaction, stored under 2
    assert _deks_per_version(admin) == {2: 3}
    assert admin.keystore.wraps_per_version() == {1: 2, 2: 3}
    admin.keystore.retire(1)
    assert _all_keys_unwrap(cdp_env.reopen()) == 3


def test_a_process_picks_up_a_rotation_from_the_key_file(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the key store refusing anything (no rewrap yet), a process wraps under the new
    version once it has looked at the file again (at most once a second; here every time)."""
    monkeypatch.setattr(provider_module, "KEY_FILE_RECHECK_SECONDS", 0.0)
    server = _other_process()
    assert server.provider.current_version() == 1
    _other_process().provider.rotate()
    sid = new_subject_id()
    server.keystore.create([sid])
    assert server.provider.current_version() == 2
    assert _deks_per_version(cdp_env.runtime) == {2: 1}


def test_stale_material_from_the_environment_fails_instead_of_wrapping_under_a_closed_version(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With CDP_MASTER_KEYS a process cannot reload newer material: once rewrap closed its
    version it refuses to create keys (loudly) rather than store one retirement would strand;
    `retire` marks the version in the key store and says the JSON must change outside cdp."""
    key_file = cdp_env.settings.resolved_key_file
    old_json = key_file.read_text()
    _other_process().provider.rotate()
    new_json = key_file.read_text()
    key_file.unlink()
    monkeypatch.setenv("CDP_MASTER_KEYS", old_json)
    stale = cdp_env.reopen()
    stale.keystore.create([new_subject_id()])  # version 1 is still open
    monkeypatch.setenv("CDP_MASTER_KEYS", new_json)
    admin = cdp_env.reopen()
    assert admin.keystore.rewrap() == 1
    with pytest.raises(KeyMaterialError, match="version 1 is superseded"):
        stale.keystore.create([new_subject_id()])
    assert admin.keystore.retire(1) is False  # the JSON is not cdp's to change
    with pytest.raises(KeyMaterialError, match="version 1 is retired"):
        stale.keystore.create([new_subject_id()])
    assert _deks_per_version(admin) == {2: 1}
    assert {s.version: s.retired for s in admin.keystore.status()} == {1: True, 2: False}
    with admin.key_engine.connect() as conn:
        states = {
            r.kek_version: (r.superseded_at is not None, r.retired_at is not None)
            for r in conn.execute(sa.select(kek_usage))
        }
    assert states == {1: (True, True), 2: (False, False)}
