"""The export's chunk loop pauses the cyclic collector only where that is safe, and restores it."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from cdp.exports.collector import chunk_collection


class _Node:
    me: object = None


@pytest.fixture
def unfrozen() -> Iterator[None]:
    was_enabled, frozen = gc.isenabled(), gc.get_freeze_count()
    gc.unfreeze()
    gc.enable()
    yield
    if frozen:
        gc.freeze()
    if not was_enabled:
        gc.disable()


def test_paused_in_a_process_that_never_froze_its_heap(unfrozen: None) -> None:
    with chunk_collection() as after_chunk:
        assert not gc.isenabled()
        assert gc.get_freeze_count() > 0
        cycle = _Node()
        cycle.me = cycle  # a cycle only the collector frees
        probe = weakref.ref(cycle)
        del cycle
        assert probe() is not None  # not collected while paused...
        after_chunk()
        assert probe() is None  # ...until the young generations are collected after a chunk
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_a_settled_heap_keeps_its_settings(unfrozen: None, monkeypatch: pytest.MonkeyPatch) -> None:
    gc.freeze()  # what the API server does at startup
    try:
        thresholds = gc.get_threshold()
        # the heap is neither unfrozen nor frozen again, nor the collector switched (the freeze
        # count itself can drop while the test runs: a frozen object freed by another thread)
        calls: list[str] = []
        for name in ("freeze", "unfreeze", "disable", "enable", "set_threshold"):
            monkeypatch.setattr(gc, name, lambda *a, _n=name: calls.append(_n))
        with chunk_collection() as after_chunk:
            assert gc.isenabled()
            after_chunk()
        monkeypatch.undo()
        assert calls == []
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == thresholds
        assert gc.isenabled()
    finally:
        gc.unfreeze()


def test_an_error_in_the_loop_restores_the_collector(unfrozen: None) -> None:
    with pytest.raises(RuntimeError), chunk_collection():
        raise RuntimeError("boom")
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0
