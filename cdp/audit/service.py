"""Recording access: the functions every door (API, CLI, export) calls around a read.

Two ways in:

* :func:`record_access` writes one record now (a denied attempt, an export batch, a key operation),
  in its own transaction or inside the caller's (``conn=``).
* :func:`audited_read` wraps a read: the body reads through ``scope.conn`` (a read transaction)
  and declares what it returns with ``scope.returned(subject_ids=..., fields=...)``; on leaving
  the block the audit record is appended and committed (group commit, :mod:`cdp.audit.batching`).
  Only then may the caller build its response. If the append or the commit fails,
  :class:`AuditWriteError` is raised and the caller has nothing to return. If the body raises, an
  ``error`` record is written before the error propagates.

* :func:`audited_read_async` is the same contract for the API's event loop: the body is a plain
  function of the scope; on SQLite it runs in the loop (a WAL read transaction takes no lock and
  waits for nobody; the loop keeps its connection open between reads), on PostgreSQL in a worker
  thread; the record is then awaited from the group committer, so no thread is held while the
  batch is fsynced.

Check the policy (:func:`require`) *before* opening :func:`audited_read`, so that a denial is
recorded as ``denied`` and nothing is read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import anyio.to_thread
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from cdp.access.context import AccessContext
from cdp.audit.batching import committer_for
from cdp.audit.chain import AuditRecord
from cdp.audit.held import HeldConnection
from cdp.audit.writer import SUBJECT_ID, AuditEntry, append
from cdp.clock import Clock, utcnow
from cdp.db.per_engine import PerEngine
from cdp.errors import AuditEntryRefusedError, AuditWriteError, PermissionDeniedError
from cdp.logging import get_logger
from cdp.runtime import Runtime

log = get_logger("cdp.audit")
T = TypeVar("T")

_loop_reads: PerEngine[HeldConnection] = PerEngine(
    lambda engine: HeldConnection(engine, sqlite_begin="DEFERRED")
)
"""The connection the event loop's reads reuse (SQLite: bodies run in the loop, one at a time)."""


def entry_for(
    ctx: AccessContext,
    *,
    action: str,
    resource: str,
    subject_ids: Iterable[str] = (),
    fields: Iterable[str] = (),
    outcome: str,
    purpose: str | None = None,
) -> AuditEntry:
    """An audit entry for ``ctx`` (its principal, roles, purpose, request id and client)."""
    return AuditEntry(
        principal_id=ctx.principal_id,
        principal_name=ctx.principal_name,
        roles=ctx.roles,
        action=action,
        resource=resource,
        subject_ids=tuple(dict.fromkeys(subject_ids)),
        fields=tuple(dict.fromkeys(fields)),
        purpose=purpose or ctx.purpose,
        outcome=outcome,
        request_id=ctx.request_id,
        client=ctx.client,
    )


def _refused(exc: ValueError) -> AuditEntryRefusedError:
    """The error for an entry the writer refused (a value that is not an id or identifier): the
    read it covers fails, alone (the committer checks an entry before it joins a batch)."""
    log.error("audit entry refused", reason=str(exc))  # the message names slots, never values
    return AuditEntryRefusedError("the audit record was refused; nothing was returned")


def _append_checked(conn: Connection, batch: Sequence[AuditEntry]) -> list[AuditRecord]:
    """The group committer's write: its entries were checked as they were submitted."""
    return append(conn, batch, checked=True)


def _write(runtime: Runtime, entries: Sequence[AuditEntry], clock: Clock) -> list[AuditRecord]:
    """Append and commit ``entries``: through the group committer (one entry, real clock), or in
    a transaction of their own (several entries, or an injected clock in tests)."""
    try:
        if len(entries) == 1 and clock is utcnow:
            committer = committer_for(runtime.data_engine)
            return [committer.submit(entries[0], _append_checked)]
        with runtime.data_engine.begin() as conn:
            return append(conn, entries, clock=clock)
    except ValueError as exc:
        raise _refused(exc) from None
    except (SQLAlchemyError, OSError) as exc:
        log.error("audit write failed", error_type=type(exc).__name__)
        raise AuditWriteError("the audit log cannot be written; nothing was returned") from None


async def _write_async(runtime: Runtime, entry: AuditEntry) -> AuditRecord:
    """Append and commit one entry through the group committer, awaited (see :func:`_write`)."""
    try:
        committer = committer_for(runtime.data_engine)
        return await committer.submit_async(entry, _append_checked)
    except ValueError as exc:
        raise _refused(exc) from None
    except (SQLAlchemyError, OSError) as exc:
        log.error("audit write failed", error_type=type(exc).__name__)
        raise AuditWriteError("the audit log cannot be written; nothing was returned") from None


def record_access(
    *,
    runtime: Runtime,
    ctx: AccessContext,
    action: str,
    resource: str,
    outcome: str,
    subject_ids: Iterable[str] = (),
    fields: Iterable[str] = (),
    purpose: str | None = None,
    conn: Connection | None = None,
    clock: Clock = utcnow,
) -> AuditRecord:
    """Write one audit record for ``ctx`` and return it.

    With ``conn`` the record joins that open transaction (the caller commits, and a failed commit
    means the record and whatever it covers are both gone); without it the record is committed
    before this returns. Raises ``AuditWriteError`` if it cannot be written.
    """
    entry = entry_for(
        ctx,
        action=action,
        resource=resource,
        subject_ids=subject_ids,
        fields=fields,
        outcome=outcome,
        purpose=purpose,
    )
    if conn is None:
        return _write(runtime, [entry], clock)[0]
    try:
        return append(conn, [entry], clock=clock)[0]
    except ValueError as exc:
        raise _refused(exc) from None
    except SQLAlchemyError:
        log.error("audit write failed", error_type="SQLAlchemyError")
        raise AuditWriteError("the audit log cannot be written; nothing was returned") from None


def deny(
    *,
    runtime: Runtime,
    ctx: AccessContext,
    action: str,
    resource: str,
    subject_ids: Iterable[str] = (),
    clock: Clock = utcnow,
) -> PermissionDeniedError:
    """Record a ``denied`` attempt and return the error to raise.

    Subject ids that are not well-formed cdp ids are left out of the record (they are whatever
    the caller typed, possibly personal data).
    """
    safe = [s for s in subject_ids if SUBJECT_ID.match(s)]
    record_access(
        runtime=runtime,
        ctx=ctx,
        action=action,
        resource=resource,
        outcome="denied",
        subject_ids=safe,
        clock=clock,
    )
    return PermissionDeniedError(
        f"the policy does not allow role(s) {', '.join(ctx.roles) or '(none)'} "
        f"to {action} {resource} for purpose {ctx.purpose}"
    )


def require(
    *,
    runtime: Runtime,
    ctx: AccessContext,
    resource: str,
    action: str,
    subject_ids: Iterable[str] = (),
    clock: Clock = utcnow,
) -> None:
    """Raise ``PermissionDeniedError`` (after writing a ``denied`` record) unless the policy allows
    ``ctx`` to ``action`` ``resource`` for its purpose."""
    if not ctx.allows(resource, action):
        raise deny(
            runtime=runtime,
            ctx=ctx,
            action=action,
            resource=resource,
            subject_ids=subject_ids,
            clock=clock,
        )


@dataclass
class AuditScope:
    """The open read transaction of :func:`audited_read` and what the read will return."""

    conn: Connection
    subject_ids: list[str] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    record: AuditRecord | None = None

    def returned(self, *, subject_ids: Iterable[str] = (), fields: Iterable[str] = ()) -> None:
        """Declare subjects and field names the response will carry (cumulative)."""
        self.subject_ids.extend(subject_ids)
        self.fields.extend(fields)


@contextmanager
def audited_read(
    *,
    runtime: Runtime,
    ctx: AccessContext,
    action: str,
    resource: str,
    subject_ids: Iterable[str] = (),
    clock: Clock = utcnow,
) -> Iterator[AuditScope]:
    """Run a read, then commit its audit record before the caller may answer (see module doc).

    ``subject_ids`` are the subjects the request names (recorded on an ``error`` outcome too);
    the body adds what it actually returns through ``scope.returned``. The body's connection is a
    read transaction (on SQLite it does not take the write lock, so reads run concurrently); the
    record is appended by the group committer, batched with concurrent requests' records, and is
    durable when this block exits. After the block, ``scope.record`` is the committed record.
    """
    named = [s for s in subject_ids if SUBJECT_ID.match(s)]
    conn = runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED")
    try:
        scope = AuditScope(conn)
        try:
            with conn.begin():
                yield scope
        except BaseException as exc:
            # A denial was recorded where it was decided; an audit failure cannot be recorded.
            if isinstance(exc, Exception) and not isinstance(
                exc, AuditWriteError | PermissionDeniedError
            ):
                entry = entry_for(
                    ctx, action=action, resource=resource, subject_ids=named, outcome="error"
                )
                _write(runtime, [entry], clock)
            raise
    finally:
        conn.close()
    entry = _allowed(ctx, action, resource, named, scope)
    scope.record = _write(runtime, [entry], clock)[0]


def _allowed(
    ctx: AccessContext, action: str, resource: str, named: list[str], scope: AuditScope
) -> AuditEntry:
    """The record of a read that succeeded: the subjects named and read, the fields returned."""
    return entry_for(
        ctx,
        action=action,
        resource=resource,
        subject_ids=[*named, *scope.subject_ids],
        fields=scope.fields,
        outcome="allowed",
    )


async def audited_read_async(
    body: Callable[[AuditScope], T],
    *,
    runtime: Runtime,
    ctx: AccessContext,
    action: str,
    resource: str,
    subject_ids: Iterable[str] = (),
) -> T:
    """:func:`audited_read` for async callers: run ``body(scope)`` in a read transaction, then
    commit its audit record; return the body's result only once the record is durable.

    The same contract: a body that raises gets an ``error`` record (unless it was a denial or an
    audit failure) and its exception propagates; an audit write that fails raises
    :class:`AuditWriteError` and the body's result is dropped. ``body`` must not ``await``: on
    SQLite it runs in the event loop (reads are local and take no lock), elsewhere in a worker
    thread.
    """
    named = [s for s in subject_ids if SUBJECT_ID.match(s)]
    engine = runtime.data_engine

    def read() -> tuple[T, AuditScope]:
        with engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
            scope = AuditScope(conn)
            with conn.begin():
                return body(scope), scope

    def read_in_loop() -> tuple[T, AuditScope]:
        with _loop_reads(engine).use() as conn:
            scope = AuditScope(conn)
            with conn.begin():
                return body(scope), scope

    try:
        if engine.dialect.name == "sqlite":
            result, scope = read_in_loop()
        else:
            result, scope = await anyio.to_thread.run_sync(read)
    except Exception as exc:
        if not isinstance(exc, AuditWriteError | PermissionDeniedError):
            entry = entry_for(
                ctx, action=action, resource=resource, subject_ids=named, outcome="error"
            )
            await _write_async(runtime, entry)
        raise
    scope.record = await _write_async(runtime, _allowed(ctx, action, resource, named, scope))
    return result
