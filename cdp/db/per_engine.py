"""One object per database engine for the process (group committers, for instance)."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

from sqlalchemy import Engine

T = TypeVar("T")


class PerEngine(Generic[T]):
    """``make(engine)`` once per engine, kept as long as the engine lives (weakly keyed)."""

    def __init__(self, make: Callable[[Engine], T]) -> None:
        self._make = make
        self._items: weakref.WeakKeyDictionary[Engine, T] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def __call__(self, engine: Engine) -> T:
        with self._lock:
            found = self._items.get(engine)
            if found is None:
                found = self._items[engine] = self._make(engine)
            return found
