"""Typed dependency aliases shared by every router."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from cdp.runtime import Runtime, get_runtime


def server_runtime() -> Runtime:
    """The process's runtime as the API takes it: whatever the databases' schema, which the
    server reports through ``/readyz`` (503 until ``cdp init`` upgraded it) instead of failing
    every request on (:func:`cdp.runtime.check_schemas`)."""
    return get_runtime(check_schema=False)


async def runtime_dep() -> Runtime:
    """The process's runtime (async: resolved in the event loop, no worker thread)."""
    return server_runtime()


RuntimeDep = Annotated[Runtime, Depends(runtime_dep)]
