"""SQLite's WAL file gives its disk space back once the WAL restarts (``journal_size_limit``):
a burst of writes that grew it does not keep it that size."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from cdp.db import engine as engines


def _wal_bytes(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


def test_the_wal_shrinks_to_its_limit_after_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engines, "WAL_SIZE_LIMIT", 64 * 1024)
    path = tmp_path / "wal.db"
    engine = engines.build_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE burst (id INTEGER PRIMARY KEY, body BLOB)")
        with engine.begin() as conn:  # ~2 MB in one transaction: under the auto-checkpoint
            conn.execute(
                sa.text("INSERT INTO burst (body) VALUES (:b)"),
                [{"b": os.urandom(4000)} for _ in range(500)],
            )
        grown = _wal_bytes(path)
        assert grown > 1024 * 1024
        with engine.connect() as conn:
            conn.connection.dbapi_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
        with engine.begin() as conn:  # the next writer restarts the WAL, then trims the file
            conn.execute(sa.text("INSERT INTO burst (body) VALUES (x'00')"))
        assert _wal_bytes(path) <= 64 * 1024 < grown
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM burst").scalar_one() == 501
    finally:
        engine.dispose()
