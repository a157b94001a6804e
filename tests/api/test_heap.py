"""The API settles the garbage collector when it starts serving."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from cdp.api.app import create_app
from cdp.api.heap import THRESHOLDS
from tests.conftest import CdpEnv


@pytest.fixture
def default_collector() -> Iterator[None]:
    before = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.set_threshold(*before)


def test_startup_freezes_the_heap_and_sets_thresholds(
    cdp_env: CdpEnv, default_collector: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    freezes: list[int] = []
    freeze = gc.freeze

    def counted() -> None:
        freezes.append(1)
        freeze()

    monkeypatch.setattr(gc, "freeze", counted)
    assert gc.get_freeze_count() == 0
    with TestClient(create_app()) as client:
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == THRESHOLDS
        assert client.get("/healthz").status_code == 200
    with TestClient(create_app()):  # a second app in the process: frozen once only
        pass
    assert freezes == [1]
    assert gc.isenabled()
