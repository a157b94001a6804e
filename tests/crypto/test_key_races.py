"""Rotating against concurrent operators and processes: two hosts rotating copies of one key
file, a rotation interrupted after reserving its version, a process checking a key file while
another records the same version."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cdp.crypto import key_checks
from cdp.crypto.key_checks import check_value, record, rotate_kek, verify_and_record
from cdp.crypto.keyfile import KeyFile
from cdp.crypto.keystore_tables import key_checks as key_checks_table
from cdp.crypto.provider import LocalKeyProvider
from cdp.errors import KeyMaterialError
from cdp.runtime import Runtime
from tests.conftest import CdpEnv
from tests.crash.helpers import CLI
from tests.factories import in_thread

MINTED_ELSEWHERE = "Copy the key file of the host that rotated"


def _host_copies(cdp_env: CdpEnv, tmp_path: Path) -> tuple[Path, Path]:
    """The key file copied to two hosts, as docs/operations.md allows."""
    copies = []
    for host in ("a", "b"):
        path = tmp_path / f"host-{host}" / "master-keys.json"
        path.parent.mkdir()
        shutil.copy(cdp_env.settings.resolved_key_file, path)
        path.chmod(0o600)
        copies.append(path)
    return copies[0], copies[1]


def _recorded_kek(rt: Runtime, version: int) -> str | None:
    c = key_checks_table.c
    with rt.key_engine.connect() as conn:
        return conn.execute(
            sa.select(c.check_value).where(c.ring == "kek", c.version == version)
        ).scalar_one_or_none()


def _kek_value(path: Path, version: int) -> str:
    return check_value(KeyFile(path).load().key("kek", version), "kek", version)


@pytest.fixture
def pause_save(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[threading.Event, threading.Event]]:
    """Hold a rotation run in a thread named ``host-a`` just before it writes the key file
    (after its version number is reserved); the test sets the second event to let it go."""
    reached, go = threading.Event(), threading.Event()
    real_save = KeyFile.save

    def save(self: KeyFile, material: Any) -> None:
        if threading.current_thread().name == "host-a":
            reached.set()
            assert go.wait(30)
        real_save(self, material)

    monkeypatch.setattr(KeyFile, "save", save)
    try:
        yield reached, go
    finally:
        go.set()


def test_two_hosts_rotating_copies_of_the_key_file_cannot_both_make_version_2(
    cdp_env: CdpEnv, tmp_path: Path, pause_save: tuple[threading.Event, threading.Event]
) -> None:
    rt = cdp_env.runtime
    a, b = _host_copies(cdp_env, tmp_path)
    reached, go = pause_save
    out: dict[str, Any] = {}
    host_a = in_thread(
        "host-a", lambda: rotate_kek(rt.key_engine, LocalKeyProvider(KeyFile(a))), out
    )
    assert reached.wait(30)  # A has reserved version 2 and not yet written its key file
    before = b.read_bytes()
    with pytest.raises(KeyMaterialError, match=MINTED_ELSEWHERE):
        rotate_kek(rt.key_engine, LocalKeyProvider(KeyFile(b)))
    assert b.read_bytes() == before  # nothing written on host B
    assert not b.with_suffix(".pending").exists()
    go.set()
    host_a.join(30)
    assert out["host-a"] == 2
    assert _recorded_kek(rt, 2) == _kek_value(a, 2)  # the one version 2 is host A's
    verify_and_record(rt.key_engine, KeyFile(b).load())  # B's servers keep running on version 1
    shutil.copy(a, b)  # what the error says to do
    verify_and_record(rt.key_engine, KeyFile(b).load())
    assert LocalKeyProvider(KeyFile(b)).current_version() == 2


def test_a_rotation_interrupted_after_its_reservation_is_finished_by_the_next_one(
    cdp_env: CdpEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = cdp_env.runtime
    a, b = _host_copies(cdp_env, tmp_path)
    real_save = KeyFile.save

    def crash(self: KeyFile, material: Any) -> None:
        raise OSError("killed before the key file was written")

    monkeypatch.setattr(KeyFile, "save", crash)
    with pytest.raises(OSError):
        rotate_kek(rt.key_engine, LocalKeyProvider(KeyFile(a)))
    monkeypatch.setattr(KeyFile, "save", real_save)
    assert KeyFile(a).load().versions("kek") == [1]
    # version 2 is reserved and no key file has it: another host may not make its own
    refused = pytest.raises(KeyMaterialError, match="run `cdp keys rotate` again on the host")
    with refused:
        rotate_kek(rt.key_engine, LocalKeyProvider(KeyFile(b)))
    assert KeyFile(b).load().versions("kek") == [1]
    # processes keep starting meanwhile: nothing is wrapped under the reserved version
    verify_and_record(rt.key_engine, KeyFile(a).load())
    assert rotate_kek(rt.key_engine, LocalKeyProvider(KeyFile(a))) == 2  # finishes it
    assert _recorded_kek(rt, 2) == _kek_value(a, 2)
    assert not a.with_suffix(".pending").exists()
    verify_and_record(rt.key_engine, KeyFile(a).load())
    assert rotate_kek(rt.key_engine, LocalKeyProvider(KeyFile(a))) == 3  # and goes on as usual


def test_a_process_never_takes_up_a_version_recorded_meanwhile_with_another_key(
    cdp_env: CdpEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key file with a version the key store has no value for is checked, and the value
    recorded, by the process that reads it; another file's value recorded between its
    comparison and its insert must make it refuse, not be kept silently."""
    rt = cdp_env.runtime
    _, b = _host_copies(cdp_env, tmp_path)
    LocalKeyProvider(KeyFile(b)).rotate()  # a version 2 the key store has no value for
    other = check_value(os.urandom(32), "kek", 2)  # host A's version 2, recorded meanwhile
    reached, go = threading.Event(), threading.Event()
    real_problems = key_checks._problems

    def compared_then_pause(*args: Any) -> Any:
        found = real_problems(*args)
        if threading.current_thread().name == "server-b" and not reached.is_set():
            reached.set()
            assert go.wait(30)
        return found

    monkeypatch.setattr(key_checks, "_problems", compared_then_pause)
    out: dict[str, Any] = {}
    server = in_thread("server-b", lambda: verify_and_record(rt.key_engine, KeyFile(b).load()), out)
    try:
        assert reached.wait(30)  # compared: version 2 unknown, about to record it
        with rt.key_engine.begin() as conn:
            record(conn, {("kek", 2): other})
    finally:
        go.set()
    server.join(30)
    assert isinstance(out["server-b"], KeyMaterialError)
    assert "kek version 2 of the key file is not the key" in str(out["server-b"])
    assert _recorded_kek(rt, 2) == other


def test_two_cdp_keys_rotate_processes_on_two_hosts_make_one_version_2(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    a, b = _host_copies(cdp_env, tmp_path)
    before = {a: a.read_bytes(), b: b.read_bytes()}
    procs = {
        path: subprocess.Popen(
            [*CLI, "keys", "rotate"],
            env={**os.environ, "CDP_KEY_FILE": str(path)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for path in (a, b)
    }
    outcome = {path: (p.wait(120), p.communicate()[0]) for path, p in procs.items()}
    won = [path for path, (rc, _) in outcome.items() if rc == 0]
    assert len(won) == 1, outcome
    [lost] = [path for path in (a, b) if path not in won]
    assert MINTED_ELSEWHERE in " ".join(outcome[lost][1].split())
    assert lost.read_bytes() == before[lost]
    assert _recorded_kek(cdp_env.runtime, 2) == _kek_value(won[0], 2)
