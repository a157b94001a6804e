"""The SQLite files are 0600 whatever the umask; a key file others can read is warned about."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from typer.testing import CliRunner

from cdp.cli import app
from cdp.db.engine import build_engine
from tests.conftest import CdpEnv

runner = CliRunner()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_sqlite_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    loose = tmp_path / "old.db"  # as an earlier release left it
    for suffix in ("", "-wal", "-shm"):
        Path(f"{loose}{suffix}").touch()
        Path(f"{loose}{suffix}").chmod(0o644)
    old = os.umask(0o022)
    try:
        engines = [build_engine(f"sqlite:///{tmp_path / name}") for name in ("new.db", "old.db")]
        conns = [engine.connect() for engine in engines]
        for conn in conns:  # each open, so its -wal and -shm files exist
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
            conn.commit()
        modes = {p.name: _mode(p) for p in tmp_path.iterdir()}
        for conn in conns:
            conn.close()
        for engine in engines:
            engine.dispose()
    finally:
        os.umask(old)
    names = [f"{db}{suffix}" for db in ("new.db", "old.db") for suffix in ("", "-wal", "-shm")]
    assert modes == dict.fromkeys(names, 0o600)


def test_a_key_file_others_can_read_is_warned_about(cdp_env: CdpEnv) -> None:
    if cdp_env.backend != "sqlite":
        pytest.skip("the key file is the same on both backends")
    key_file = cdp_env.settings.resolved_key_file
    key_file.chmod(0o644)
    with capture_logs() as logs:
        cdp_env.reopen()
    assert any("key file readable by other users" in e["event"] for e in logs)
    status = runner.invoke(app, ["keys", "status"])
    assert status.exit_code == 0 and "mode 644" in status.stdout
    assert "chmod 600" in status.stdout
