"""The audit record of a change to a destination (its creation, a new signing secret, a change of
its settings, switching it off or on).

A destination decides where personal data goes, and its signing secret who can pass for cdp to
its receiver: the log shows who created which destination, who rotated its secret, who changed
what, and who disabled or enabled it, written in the transaction that makes the change (a change
the log cannot record is not made)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection

from cdp.access.context import AccessContext
from cdp.audit.operations import change_recorder
from cdp.exports.destination_changes import ChangedDestination
from cdp.runtime import Runtime


def destination_recorder(
    runtime: Runtime, ctx: AccessContext, action: str
) -> Callable[[Connection, str], None]:
    """The ``audit`` callback of ``create_destination`` / ``rotate_secret`` for ``ctx``:
    ``action`` on ``destinations``, naming ``destination:<id>``."""
    return change_recorder(
        runtime, ctx, action=action, resource="destinations", fields=_destination_fields
    )


def change_recorder_for(
    runtime: Runtime, ctx: AccessContext
) -> Callable[[Connection, ChangedDestination], None]:
    """The ``audit`` callback of ``update_destination`` / ``set_enabled`` for ``ctx``: ``write``
    on ``destinations``, naming ``destination:<id>``, ``set:<setting>`` for each setting changed,
    the new field list (``field:<name>`` each) when the fields changed, and ``enabled:true`` or
    ``enabled:false`` when it was switched (never a URL: it is shown to the destination's
    readers, not copied into the log)."""
    return change_recorder(
        runtime, ctx, action="write", resource="destinations", fields=_change_fields
    )


def _destination_fields(destination_id: str) -> tuple[str, ...]:
    return (f"destination:{destination_id}",)


def _change_fields(change: ChangedDestination) -> tuple[str, ...]:
    dest = change.destination
    named = [f"destination:{dest.id}", *(f"set:{s}" for s in change.changed)]
    if "fields" in change.changed:
        named += [f"field:{f}" for f in dest.fields]
    if "enabled" in change.changed:
        named.append(f"enabled:{str(dest.enabled).lower()}")
    return tuple(named)
