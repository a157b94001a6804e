"""Typed dependency aliases shared by every router."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from cdp.runtime import Runtime, get_runtime


def runtime_dep() -> Runtime:
    return get_runtime()


RuntimeDep = Annotated[Runtime, Depends(runtime_dep)]
