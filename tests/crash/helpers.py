"""Helpers for crash and concurrency tests: subprocesses on loopback, integrity checks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

from cdp.runtime import Runtime

CLI = [sys.executable, "-c", "from cdp.cli import main; main()"]

# Every table whose rows hang off a subject: none may outlive its subject.
CHILDREN = ("identities", "pii_records", "orders", "events", "consent_events")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    log: Path, *, workers: int = 1, extra: list[str] | None = None, scheduler: bool = False
) -> tuple[subprocess.Popen[bytes], str]:
    """``cdp serve`` on 127.0.0.1 (this test's environment), ready to serve; without its export
    scheduler unless ``scheduler``."""
    port = free_port()
    cmd = [*CLI, "serve", "--port", str(port), "--workers", str(workers)]
    if not scheduler:
        cmd.append("--no-scheduler")
    fh = log.open("wb")
    proc = subprocess.Popen(
        [*cmd, *(extra or [])], stdout=fh, stderr=subprocess.STDOUT, env=os.environ.copy()
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("server did not become ready")


def check_integrity(rt: Runtime) -> None:
    """The database's own check (SQLite) and referential consistency (both backends)."""
    for engine in (rt.data_engine, rt.key_engine):
        if engine.dialect.name == "sqlite":
            with engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
                assert conn.exec_driver_sql("PRAGMA foreign_key_check").first() is None
    with rt.data_engine.connect() as conn:
        for table in CHILDREN:
            orphans = conn.execute(
                sa.text(
                    f"SELECT count(*) FROM {table} c WHERE c.subject_id IS NOT NULL AND NOT "
                    "EXISTS (SELECT 1 FROM subjects s WHERE s.id = c.subject_id)"
                )
            ).scalar_one()
            assert orphans == 0, f"{table} has rows without a subject"


def audit_verify() -> subprocess.CompletedProcess[str]:
    """``cdp audit verify`` in a fresh process (reads the chain from the database)."""
    return subprocess.run(
        [*CLI, "audit", "verify"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=300,
        check=False,
    )
