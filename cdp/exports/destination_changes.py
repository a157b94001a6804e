"""Changing a destination, and switching it off and on.

An admin may change what a destination receives and how it is reached: its fields, minimum
audience, webhook URL, batch size, tries and timeout. Every change is checked as a creation is
(:func:`cdp.exports.destinations.check_settings`: fields the kind allows, the webhook URL rules
of :mod:`cdp.exports.webhook_hosts`, the ranges) against the destination as it will be.

Its kind and purpose are fixed: the sync state and the recipients ledger of a destination
assume one output and one consent purpose (an export's removes go to where its adds went, under
the consent they were sent under), so changing either is refused, naming the way out (a new
destination). Its name is fixed too (file exports are filed under it).

What a change means for the incremental sync (:mod:`cdp.exports.sync`):

- a **field newly allowed** is sent to everyone: the sync state tracks membership, not values,
  so without more the subjects the destination already holds would never receive it (only a
  ``--full`` run would send it). The change therefore marks every sync row of the destination
  *unconfirmed* (:func:`cdp.exports.sync.unconfirm`), in its transaction: the next run of each
  segment sends every eligible subject again, with the new field, and withdraws the others as
  always. An export running while the fields are widened still sends the fields it started
  with; its close sees the change (it reads the destination's row, locked, as this change
  locks it) and leaves its adds unconfirmed too (:func:`widened_since`);
- a **field no longer allowed** is simply not sent from then on: nothing is sent again (what
  the destination already received is its own to delete), and removes carry the fields left;
- a **new URL** is the same recipient at a new address: the sync state, the recipients ledger
  and the signing secret are kept, so the next run sends only what changed, to the new
  address;
- the other settings change how exports behave from the next run on.

A **disabled** destination refuses every export (:class:`cdp.errors.DestinationDisabledError`,
before anything is stored), and the scheduler skips its schedules
(:func:`cdp.exports.schedule.run_due_exports`); it keeps its sync state, ledger and secret, so
enabling it again resumes where it stopped (withdrawals meanwhile become removes on the next
run). An export already running when it is disabled finishes.

Each change and its audit record (``audit``:
:func:`cdp.exports.destination_audit.change_recorder_for`) are written in one transaction, or
neither is. A request that changes nothing writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import Connection

from cdp.clock import Clock, utcnow
from cdp.errors import InvalidInputError
from cdp.exports import sync
from cdp.exports.destinations import (
    DESTINATIONS,
    DestinationInfo,
    DestinationSpec,
    check_settings,
    find_row,
    info_of,
)
from cdp.runtime import Runtime

#: The settings a change may set, in the order they are reported.
SETTINGS: Final = ("fields", "min_audience", "url", "batch_size", "max_attempts", "timeout_seconds")
_FIXED: Final = {
    "kind": "the kind of a destination cannot change (its outputs and sync state are of one "
    "kind): create a new destination",
    "purpose": "the purpose of a destination cannot change (its sync state and recipients "
    "ledger hold subjects sent under that purpose's consent): create a new destination",
}


@dataclass(frozen=True, slots=True)
class DestinationChanges:
    """What an admin changes; None leaves a setting as it is. ``kind`` and ``purpose`` are
    refused unless they are the destination's own (a client may send them back unchanged)."""

    fields: Sequence[str] | None = None
    min_audience: int | None = None
    url: str | None = None
    batch_size: int | None = None
    max_attempts: int | None = None
    timeout_seconds: float | None = None
    kind: str | None = None
    purpose: str | None = None


@dataclass(frozen=True, slots=True)
class ChangedDestination:
    """A destination after a change: what changed (setting names, ``enabled``), and whether
    the next run of each segment sends every eligible subject again (fields were widened)."""

    destination: DestinationInfo
    changed: tuple[str, ...]
    resend: bool = False
    added_fields: tuple[str, ...] = ()


Audit = Callable[[Connection, ChangedDestination], object]


def update_destination(
    *,
    runtime: Runtime,
    name: str,
    changes: DestinationChanges,
    clock: Clock = utcnow,
    audit: Audit | None = None,
) -> ChangedDestination:
    """Apply ``changes`` to the destination named (or with id) ``name`` (see the module doc).
    Raises ``InvalidInputError`` naming the setting (as a creation would, or a kind or purpose
    that would change), ``NotFoundError``."""
    with runtime.data_engine.connect() as conn:
        txn = conn.begin()  # SQLite: BEGIN IMMEDIATE; PostgreSQL: the row is locked below
        row = find_row(conn, name, lock=True)
        current = info_of(row)
        for setting, message in _FIXED.items():
            given = getattr(changes, setting)
            if given is not None and given != getattr(current, setting):
                raise InvalidInputError(message, field=setting)
        wanted = _spec(current, changes)
        _, fields, url = check_settings(wanted)
        after: dict[str, Any] = {
            "fields": fields,
            "min_audience": wanted.min_audience,
            "url": url,
            "batch_size": wanted.batch_size,
            "max_attempts": wanted.max_attempts,
            "timeout_seconds": wanted.timeout_seconds,
        }
        changed = tuple(s for s in SETTINGS if after[s] != getattr(current, s))
        if not changed:
            return ChangedDestination(current, ())
        added = tuple(f for f in fields if f not in current.fields)
        now = clock()
        conn.execute(
            sa.update(DESTINATIONS)
            .where(DESTINATIONS.c.id == current.id)
            .values(
                **{s: after[s] for s in changed if s != "fields"},
                **({"fields": ",".join(fields)} if "fields" in changed else {}),
                updated_at=now,
            )
        )
        if added:
            sync.unconfirm(conn, destination_id=current.id)
        result = ChangedDestination(
            replace(current, **{s: after[s] for s in changed}, updated_at=now),
            changed,
            resend=bool(added),
            added_fields=added,
        )
        if audit is not None:
            audit(conn, result)
        txn.commit()
    return result


def set_enabled(
    *,
    runtime: Runtime,
    name: str,
    enabled: bool,
    clock: Clock = utcnow,
    audit: Audit | None = None,
) -> ChangedDestination:
    """Enable or disable the destination named (or with id) ``name``; ``changed`` is empty when
    it already was (no record is written). Raises ``NotFoundError``."""
    with runtime.data_engine.connect() as conn:
        txn = conn.begin()
        current = info_of(find_row(conn, name, lock=True))
        if current.enabled == enabled:
            return ChangedDestination(current, ())
        now = clock()
        conn.execute(
            sa.update(DESTINATIONS)
            .where(DESTINATIONS.c.id == current.id)
            .values(enabled=enabled, updated_at=now)
        )
        result = ChangedDestination(replace(current, enabled=enabled, updated_at=now), ("enabled",))
        if audit is not None:
            audit(conn, result)
        txn.commit()
    return result


def widened_since(conn: Connection, *, destination_id: str, fields: Sequence[str]) -> bool:
    """Whether the destination now allows a field that is not in ``fields`` (those an export
    started with), read under a share lock of its row (PostgreSQL) in the export's closing
    transaction: a concurrent :func:`update_destination` either committed before (this sees
    its fields) or waits for the close (its :func:`~cdp.exports.sync.unconfirm` then sees the
    rows the close wrote)."""
    now = conn.execute(
        sa.select(DESTINATIONS.c.fields)
        .where(DESTINATIONS.c.id == destination_id)
        .with_for_update(read=True)
    ).scalar_one_or_none()
    return now is not None and bool({f for f in now.split(",") if f} - set(fields))


def _spec(current: DestinationInfo, changes: DestinationChanges) -> DestinationSpec:
    """The destination as it would be after ``changes``."""

    def pick(setting: str) -> Any:
        given = getattr(changes, setting)
        return getattr(current, setting) if given is None else given

    return DestinationSpec(
        name=current.name,
        kind=current.kind,
        purpose=current.purpose,
        fields=list(pick("fields")),
        min_audience=pick("min_audience"),
        url=pick("url"),
        batch_size=pick("batch_size"),
        max_attempts=pick("max_attempts"),
        timeout_seconds=pick("timeout_seconds"),
    )
