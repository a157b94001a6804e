"""Appending to the audit chain: the only code that writes ``audit_log`` (insert only).

An append runs inside the caller's transaction: it locks the chain's head row
(``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite every transaction already holds the database
write lock from ``BEGIN IMMEDIATE``), gives each new record the next sequence number, hashes it
onto the previous hash, inserts it and moves the head. Writers in other threads or processes wait
on the head row, so the chain stays linear and sequence numbers stay gap-free; a writer whose
transaction rolls back leaves no trace.

Every string that enters a record is checked against a strict pattern: subject ids are cdp's
random hex ids and field, action and resource names are identifiers, so no personal value can be
written into the log by mistake.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, cast

import sqlalchemy as sa
from sqlalchemy import Connection

from cdp.audit.chain import (
    GENESIS_HASH,
    OUTCOMES,
    AuditRecord,
    canonical,
    chain_hash,
    format_at,
    list_text,
)
from cdp.audit.models import AuditHead, AuditLogRow, AuditSubject
from cdp.clock import Clock, utcnow
from cdp.observability import timed_audit_write

LOG = cast(sa.Table, AuditLogRow.__table__)  # type: ignore[attr-defined]
HEAD = cast(sa.Table, AuditHead.__table__)  # type: ignore[attr-defined]
SUBJECTS = cast(sa.Table, AuditSubject.__table__)  # type: ignore[attr-defined]

SUBJECT_ID: Final = re.compile(r"^[0-9a-f]{32}\Z")
r"""A cdp subject id, the whole string (``\Z``: unlike ``$``, no trailing newline), so that the
callers' filters (``SUBJECT_ID.match``) keep out exactly what ``check_entry`` refuses."""
# Every id of a record at once (an export's record names thousands): one C-level match of the
# comma-joined list instead of one ``SUBJECT_ID`` match per id. A comma can only follow 32 hex
# digits, so an id of another length or with another character fails the whole list.
_SUBJECT_LIST: Final = re.compile(r"(?:[0-9a-f]{32},)*[0-9a-f]{32}")
_NAME: Final = re.compile(r"^[A-Za-z0-9_.:/@*-]{1,64}\Z")
_CLIENT: Final = re.compile(r"^[A-Za-z0-9_.:@\[\]-]{0,128}\Z")
_ACTION_MAX: Final = 32
_PURPOSE_MAX: Final = 32
_ROLES_MAX: Final = 256
"""The sizes of ``audit_log.action``, ``purpose`` and ``roles`` (PostgreSQL enforces them)."""

_HEAD_FOR_UPDATE = sa.select(HEAD.c.seq, HEAD.c.hash).where(HEAD.c.id == 1).with_for_update()
_LAST_ROW = sa.select(LOG.c.seq, LOG.c.hash).order_by(LOG.c.seq.desc()).limit(1)
_INSERT_LOG = sa.insert(LOG)
_INSERT_SUBJECTS = sa.insert(SUBJECTS)
_MOVE_HEAD = (
    sa.update(HEAD)
    .where(HEAD.c.id == 1)
    .values(seq=sa.bindparam("new_seq"), hash=sa.bindparam("new_hash"))
)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """What a caller asks to record; the writer adds sequence, time and hashes."""

    principal_id: str
    principal_name: str
    roles: tuple[str, ...]
    action: str
    resource: str
    subject_ids: tuple[str, ...]
    fields: tuple[str, ...]
    purpose: str
    outcome: str
    request_id: str
    client: str


_IDENTIFIERS: set[str] = set()
"""Strings already matched against ``_NAME`` (actions, resources, purposes, roles, fields and
principals repeat on every record; bounded, emptied when full)."""
_MAX_IDENTIFIERS: Final = 4096


def _identifier(name: str) -> bool:
    if name in _IDENTIFIERS:
        return True
    if not _NAME.match(name):
        return False
    if len(_IDENTIFIERS) >= _MAX_IDENTIFIERS:
        _IDENTIFIERS.clear()
    _IDENTIFIERS.add(name)
    return True


def check_entry(entry: AuditEntry) -> AuditEntry:
    """Refuse anything that does not look like an id or identifier (never a personal value), or
    that its column cannot hold: raise ``ValueError`` (whose message holds no value).

    The group committer calls this before an entry joins a batch, so that an entry the append
    would refuse fails alone instead of failing every record of its batch."""
    if entry.outcome not in OUTCOMES:
        raise ValueError(f"audit outcome must be one of {OUTCOMES}")
    for name in (entry.action, entry.resource, entry.purpose, entry.principal_id):
        if not _identifier(name):
            raise ValueError("audit action, resource, purpose and principal must be identifiers")
    if len(entry.action) > _ACTION_MAX or len(entry.purpose) > _PURPOSE_MAX:
        raise ValueError(f"audit actions and purposes are at most {_ACTION_MAX} characters")
    if sum(len(r) + 1 for r in entry.roles) > _ROLES_MAX + 1:
        raise ValueError(f"audit roles are at most {_ROLES_MAX} characters together")
    for name in (*entry.fields, *entry.roles, entry.principal_name):
        if not _identifier(name):
            raise ValueError("audit field, role, principal and request names must be identifiers")
    if not _NAME.match(entry.request_id):  # unique per request: not worth remembering
        raise ValueError("audit field, role, principal and request names must be identifiers")
    if entry.subject_ids and not _SUBJECT_LIST.fullmatch(",".join(entry.subject_ids)):
        raise ValueError("audit subject ids must be cdp subject ids")
    if not _CLIENT.match(entry.client):
        raise ValueError("audit client must be a host address or name")
    return entry


class _RawSqlite:
    """The append's statements compiled once for SQLite and run on the DBAPI cursor inside the
    caller's transaction (SQLAlchemy's per-statement execution cost is several times SQLite's
    own for these small statements). Values pass through each column type's bind processor, so
    what is stored is what ``Connection.execute`` would store."""

    def __init__(self, conn: Connection) -> None:
        dialect = conn.dialect
        self.log_sql, self.log_columns, self.log_processors = _insert_sql(LOG, dialect)
        self.subjects_sql, self.subjects_columns, self.subjects_processors = _insert_sql(
            SUBJECTS, dialect
        )
        self.head_sql = str(_HEAD_FOR_UPDATE.compile(dialect=dialect))
        self.move_sql = str(_MOVE_HEAD.compile(dialect=dialect))
        # links go to the driver as the (subject_id, seq) pairs they are, when nothing converts
        self.links_as_pairs = self.subjects_columns == ("subject_id", "seq") and not any(
            self.subjects_processors
        )

    def head(self, conn: Connection) -> tuple[int, str] | None:
        """The head row (SQLite: the transaction already holds the write lock)."""
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            row = cursor.execute(self.head_sql, (1,)).fetchone()
        finally:
            cursor.close()
        return (int(row[0]), str(row[1])) if row is not None else None

    def move(self, conn: Connection, seq: int, digest: str) -> None:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(self.move_sql, (seq, digest, 1))
        finally:
            cursor.close()

    def insert(self, conn: Connection, table: str, rows: list[dict[str, object]]) -> None:
        if table == "log":
            sql, columns, processors = self.log_sql, self.log_columns, self.log_processors
        else:
            sql, columns, processors = (
                self.subjects_sql,
                self.subjects_columns,
                self.subjects_processors,
            )
        convert = [(i, p) for i, p in enumerate(processors) if p is not None]
        values: list[Any] = []
        for r in rows:
            row = [r[c] for c in columns]
            for i, p in convert:
                row[i] = p(row[i])
            values.append(row)
        self._run(conn, sql, values)

    def insert_links(self, conn: Connection, links: list[tuple[str, int]]) -> None:
        """``audit_subjects`` rows from ``(subject_id, seq)`` pairs: passed to the driver as
        they are when the columns are in that order without bind processors (plain text and
        integer), through :meth:`insert` otherwise."""
        if self.links_as_pairs:
            self._run(conn, self.subjects_sql, links)
        else:
            self.insert(conn, "subjects", _link_rows(links))

    def _run(self, conn: Connection, sql: str, values: Sequence[Sequence[Any]]) -> None:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(sql, values)
        except conn.dialect.loaded_dbapi.Error as exc:  # as Connection.execute would raise it
            raise sa.exc.DBAPIError.instance(
                sql, None, exc, conn.dialect.loaded_dbapi.Error, hide_parameters=True
            ) from None
        finally:
            cursor.close()


def _link_rows(links: list[tuple[str, int]]) -> list[dict[str, object]]:
    """``audit_subjects`` rows as column mappings (statements that bind by name)."""
    return [{"subject_id": s, "seq": q} for s, q in links]


def _insert_sql(
    table: sa.Table, dialect: sa.Dialect
) -> tuple[str, tuple[str, ...], tuple[Callable[[Any], Any] | None, ...]]:
    columns = tuple(c.name for c in table.columns)
    compiled = sa.insert(table).compile(dialect=dialect, column_keys=list(columns))
    order = tuple(compiled.positiontup or ())
    processors = tuple(
        _faster(table.c[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in order
    )
    return str(compiled), order, processors


_SAMPLE_TIMES: Final = (
    datetime(2026, 11, 23, 10, 46, 6, 123456, tzinfo=UTC),
    datetime(2026, 1, 1, tzinfo=UTC),
    datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
)


def _faster(processor: Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
    """For a bind processor that stores an aware UTC datetime as SQLite's text (what
    ``UtcDateTime`` does there: ``YYYY-MM-DD HH:MM:SS.ffffff``), the same text from
    ``isoformat`` (C) instead of a ``TypeDecorator`` step and a ``%``-format (Python), the
    original for anything else; used only when it gives the original's text for sample times."""
    if processor is None:
        return None

    def process(value: Any) -> Any:
        if type(value) is datetime and value.tzinfo is UTC:
            return value.isoformat(" ", "microseconds")[:26]
        return processor(value)

    try:
        same = all(process(t) == processor(t) for t in _SAMPLE_TIMES)
    except Exception:  # not a datetime column
        return processor
    return process if same else processor


_raw: _RawSqlite | None = None


def _raw_sqlite(conn: Connection) -> _RawSqlite | None:
    """The raw statements when ``conn`` is SQLite with the positional driver, else ``None``."""
    global _raw
    if conn.dialect.name != "sqlite" or conn.dialect.paramstyle != "qmark":
        return None
    if _raw is None:
        _raw = _RawSqlite(conn)
    return _raw


def _lock_head(conn: Connection) -> tuple[int, str]:
    """Lock the head row (creating it from the log's last record if it is missing)."""
    head = conn.execute(_HEAD_FOR_UPDATE).first()
    if head is not None:
        return int(head[0]), str(head[1])
    last = conn.execute(_LAST_ROW).first()
    seq, digest = (int(last[0]), str(last[1])) if last is not None else (0, GENESIS_HASH)
    conn.execute(
        sa.text(
            "INSERT INTO audit_head (id, seq, hash) VALUES (1, :seq, :hash) "
            "ON CONFLICT (id) DO NOTHING"
        ),
        {"seq": seq, "hash": digest},
    )
    head = conn.execute(_HEAD_FOR_UPDATE).one()
    return int(head[0]), str(head[1])


@functools.lru_cache(maxsize=1024)
def _fields_text(fields: tuple[str, ...]) -> str:
    """``list_text`` of a field list (a handful of distinct lists recur on every record)."""
    return list_text(fields)


def _subjects_text(subject_ids: tuple[str, ...]) -> str:
    """``list_text`` of checked subject ids: each is 32 hex digits (``check_entry``), which JSON
    writes as they are, so the compact array is the ids quoted and comma-joined."""
    return '["' + '","'.join(subject_ids) + '"]' if subject_ids else "[]"


def _at_text(at: datetime) -> str:
    """``format_at(at)``: from ``isoformat`` (implemented in C) for a UTC time of a four-digit
    year, the clock's case; ``strftime`` otherwise."""
    if at.tzinfo is UTC and at.year >= 1000:
        return at.isoformat(timespec="microseconds")[:26] + "Z"
    return format_at(at)


@timed_audit_write
def append(
    conn: Connection,
    entries: Sequence[AuditEntry],
    *,
    clock: Clock = utcnow,
    checked: bool = False,
) -> list[AuditRecord]:
    """Append ``entries`` to the chain inside ``conn``'s open transaction; return the records.

    The caller commits; until then nobody else can append. Raises ``ValueError`` for an entry
    that is not safe to record. ``checked``: every entry already passed :func:`check_entry` (the
    group committer checks each one as it is submitted), so it is not checked twice.
    """
    ready = list(entries) if checked else [check_entry(e) for e in entries]
    if not ready:
        return []
    raw = _raw_sqlite(conn)
    found = raw.head(conn) if raw is not None else None
    seq, prev = found if found is not None else _lock_head(conn)
    records: list[AuditRecord] = []
    rows: list[dict[str, object]] = []
    links: list[tuple[str, int]] = []
    for e in ready:
        seq += 1
        at = clock()
        subjects_text = _subjects_text(e.subject_ids)
        fields_text = _fields_text(e.fields)
        roles_text = ",".join(e.roles)
        digest = chain_hash(
            prev,
            canonical(
                seq,
                _at_text(at),
                e.principal_id,
                e.principal_name,
                roles_text,
                e.action,
                e.resource,
                subjects_text,
                fields_text,
                e.purpose,
                e.outcome,
                e.request_id,
                e.client,
            ),
        )
        rows.append(
            {
                "seq": seq,
                "at": at,
                "principal_id": e.principal_id,
                "principal_name": e.principal_name,
                "roles": roles_text,
                "action": e.action,
                "resource": e.resource,
                "subject_ids": subjects_text,
                "fields": fields_text,
                "purpose": e.purpose,
                "outcome": e.outcome,
                "request_id": e.request_id,
                "client": e.client,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        links.extend([(s, seq) for s in dict.fromkeys(e.subject_ids)])
        records.append(
            AuditRecord(
                seq=seq,
                at=at,
                principal_id=e.principal_id,
                principal_name=e.principal_name,
                roles=e.roles,
                action=e.action,
                resource=e.resource,
                subject_ids=e.subject_ids,
                fields=e.fields,
                purpose=e.purpose,
                outcome=e.outcome,
                request_id=e.request_id,
                client=e.client,
                prev_hash=prev,
                hash=digest,
            )
        )
        prev = digest
    if raw is not None:
        raw.insert(conn, "log", rows)
        if links:
            raw.insert_links(conn, links)
        raw.move(conn, seq, prev)
    else:
        conn.execute(_INSERT_LOG, rows)
        if links:
            conn.execute(_INSERT_SUBJECTS, _link_rows(links))
        conn.execute(_MOVE_HEAD, {"new_seq": seq, "new_hash": prev})
    return records
