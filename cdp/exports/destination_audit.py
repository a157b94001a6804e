"""The audit record of a change to a destination (its creation, a new signing secret).

A destination decides where personal data goes, and its signing secret who can pass for cdp to
its receiver: the log shows who created which destination and who rotated its secret, written
in the transaction that makes the change (a change the log cannot record is not made)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection

from cdp.access.context import AccessContext
from cdp.audit.operations import change_recorder
from cdp.runtime import Runtime


def destination_recorder(
    runtime: Runtime, ctx: AccessContext, action: str
) -> Callable[[Connection, str], None]:
    """The ``audit`` callback of ``create_destination`` / ``rotate_secret`` for ``ctx``:
    ``action`` on ``destinations``, naming ``destination:<id>``."""
    return change_recorder(
        runtime, ctx, action=action, resource="destinations", fields=_destination_fields
    )


def _destination_fields(destination_id: str) -> tuple[str, ...]:
    return (f"destination:{destination_id}",)
