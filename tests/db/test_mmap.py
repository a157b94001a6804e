"""SQLite connections read the database file through a memory map (``mmap_size``)."""

from __future__ import annotations

from pathlib import Path

from cdp.db import engine as engines


def test_every_sqlite_connection_reads_through_a_memory_map(tmp_path: Path) -> None:
    engine = engines.build_engine(f"sqlite:///{tmp_path / 'mm.db'}")
    try:
        for _ in range(2):  # each new connection, not only the first
            raw = engine.raw_connection()
            try:
                size = raw.driver_connection.execute("PRAGMA mmap_size").fetchone()[0]  # type: ignore[union-attr]
            finally:
                raw.invalidate()
            assert size == engines.MMAP_SIZE
    finally:
        engine.dispose()
