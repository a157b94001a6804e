"""Typed dependency aliases shared by every router."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from cdp.runtime import Runtime, get_runtime


async def runtime_dep() -> Runtime:
    """The process's runtime (async: resolved in the event loop, no worker thread)."""
    return get_runtime()


RuntimeDep = Annotated[Runtime, Depends(runtime_dep)]
