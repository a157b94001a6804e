"""The batch connector pauses the cyclic collector only while it runs, whatever happens."""

from __future__ import annotations

import gc
import threading
from pathlib import Path

import pytest

from cdp.ingest.collector import collector_paused
from cdp.ingest.pipeline import ingest_file
from tests.conftest import CdpEnv
from tests.ingest.helpers import CUSTOMER_HEADER, customer, write_csv


def test_paused_inside_and_restored_after_errors() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        assert not gc.isenabled()
        raise RuntimeError("boom")
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # a caller's own choice is left as it was
    finally:
        gc.enable()


def test_overlapping_pauses_restore_once_the_last_one_ends() -> None:
    first_in, second_done = threading.Event(), threading.Event()
    states: list[bool] = []

    def first() -> None:
        with collector_paused():
            first_in.set()
            second_done.wait(10)
            states.append(gc.isenabled())  # still paused: the other run ended first

    worker = threading.Thread(target=first)
    worker.start()
    assert first_in.wait(10)
    with collector_paused():
        assert not gc.isenabled()
    second_done.set()
    worker.join(10)
    assert states == [False]
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_ingest_leaves_the_collector_enabled(cdp_env: CdpEnv, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", [customer(n) for n in range(1, 30)], CUSTOMER_HEADER)
    summary = ingest_file(runtime=cdp_env.runtime, kind="customers", path=path, batch_size=7)
    assert summary.inserted == 29
    assert gc.isenabled()
    with pytest.raises(FileNotFoundError):
        ingest_file(runtime=cdp_env.runtime, kind="customers", path=tmp_path / "missing.csv")
    assert gc.isenabled()
