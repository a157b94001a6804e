"""The key store's tables and its driver-level reads and writes: the wrapped data keys
(``data_keys``) and each KEK version's usage and state (``kek_usage``), in the key store's own
database. :class:`cdp.crypto.keystore.KeyStore` is what uses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    func,
    select,
    text,
)
from sqlalchemy.engine import Connection

from cdp.crypto.keyfile import KeyVersion
from cdp.db.types import UtcDateTime

keystore_metadata = MetaData()

data_keys = Table(
    "data_keys",
    keystore_metadata,
    Column("subject_id", String(32), primary_key=True),
    Column("dek_version", Integer, nullable=False, default=1),
    Column("kek_version", Integer, nullable=False, index=True),
    Column("wrapped", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("rewrapped_at", UtcDateTime, nullable=True),
    sqlite_with_rowid=False,  # clustered on subject_id (migration k0002)
)

kek_usage = Table(
    "kek_usage",
    keystore_metadata,
    Column("kek_version", Integer, primary_key=True),
    Column("wraps", BigInteger, nullable=False, default=0),
    # When a newer version took over (``rewrap``) and when this one was retired: from either on,
    # the key store refuses to wrap under it (migration k0003; see ``KeyStore.create``).
    Column("superseded_at", UtcDateTime, nullable=True),
    Column("retired_at", UtcDateTime, nullable=True),
)

key_checks = Table(
    "key_checks",
    keystore_metadata,
    # One key-check value per ring ("kek", "pseudonym") and version (migration k0004; see
    # :mod:`cdp.crypto.key_checks`): HMAC of a fixed label under the key, never the key.
    Column("ring", String(16), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("check_value", String(64), nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
)

SQLITE_CACHE_KIB = 16_384
"""Page cache of the key-store connection that inserts a batch of keys, on SQLite (16 MB; with
the default 2 MB the subject-id index's pages spill and are re-read once the store holds tens of
thousands of keys)."""


def insert_keys(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert wrapped keys through the driver's executemany (ingestion creates thousands per
    batch; SQLAlchemy's per-value processing cost more than wrapping them), in subject-id order:
    the primary key's index then takes them page by page, not at random."""
    rows = sorted(rows, key=itemgetter("subject_id"))
    dialect = conn.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        conn.execute(data_keys.insert(), rows)
        return
    marks = "?, ?, ?, ?, ?" if dialect == "sqlite" else "%s, %s, %s, %s, %s"
    sql = (
        "INSERT INTO data_keys (subject_id, dek_version, kek_version, wrapped, created_at) "
        "VALUES (" + marks + ")"
    )
    if dialect == "sqlite":
        conn.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    stamp: dict[datetime, Any] = {}

    def when(value: datetime) -> Any:  # SQLite: naive UTC text, as UtcDateTime writes it
        if dialect != "sqlite":
            return value
        if value not in stamp:
            naive = value.astimezone(UTC).replace(tzinfo=None)
            stamp[value] = naive.isoformat(" ", "microseconds")
        return stamp[value]

    conn.exec_driver_sql(
        sql,
        [
            (
                r["subject_id"],
                r["dek_version"],
                r["kek_version"],
                r["wrapped"],
                when(r["created_at"]),
            )
            for r in rows
        ],
    )


_LOAD = text(
    "SELECT subject_id, dek_version, kek_version, wrapped FROM data_keys WHERE subject_id IN :ids"
).bindparams(bindparam("ids", expanding=True))


LOAD_BATCH = 1000


def fetch_wrapped(conn: Connection, ids: list[str]) -> list[tuple[str, int, int, bytes]]:
    """``(subject_id, dek_version, kek_version, wrapped)`` of ``ids`` inside ``conn``'s open
    transaction (driver cursor on SQLite and PostgreSQL; SQLAlchemy elsewhere)."""
    dialect = conn.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        return [(s, int(d), int(k), bytes(w)) for s, d, k, w in conn.execute(_LOAD, {"ids": ids})]
    cur: Any = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        if dialect == "sqlite":
            cur.execute(
                "SELECT subject_id, dek_version, kek_version, wrapped FROM data_keys "  # noqa: S608
                f"WHERE subject_id IN ({','.join('?' * len(ids))})",
                ids,
            )
        else:
            cur.execute(
                "SELECT subject_id, dek_version, kek_version, wrapped FROM data_keys "
                "WHERE subject_id = ANY(%s)",
                (ids,),
            )
        rows: list[tuple[str, int, int, bytes]] = cur.fetchall()
    finally:
        cur.close()
    return rows


def fetch_wrapped_between(
    conn: Connection, first: str, last: str, limit: int
) -> list[tuple[str, int, int, bytes]]:
    """Like :func:`fetch_wrapped`, for every key whose subject id lies between ``first`` and
    ``last`` (inclusive; one range read of the primary key), at most ``limit`` rows."""
    query = (
        select(data_keys.c.subject_id, data_keys.c.dek_version, data_keys.c.kek_version,
               data_keys.c.wrapped)
        .where(data_keys.c.subject_id >= first, data_keys.c.subject_id <= last)
        .limit(limit)
    )  # fmt: skip
    dialect = conn.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        return [(s, int(d), int(k), bytes(w)) for s, d, k, w in conn.execute(query)]
    mark = "?" if dialect == "sqlite" else "%s"
    cur: Any = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cur.execute(
            "SELECT subject_id, dek_version, kek_version, wrapped FROM data_keys "  # noqa: S608
            f"WHERE subject_id >= {mark} AND subject_id <= {mark} LIMIT {mark}",
            (first, last, limit),
        )
        rows: list[tuple[str, int, int, bytes]] = cur.fetchall()
    finally:
        cur.close()
    return rows


def deks_by_version(conn: Connection) -> dict[int, int]:
    rows = conn.execute(
        select(data_keys.c.kek_version, func.count()).group_by(data_keys.c.kek_version)
    )
    return {int(v): int(n) for v, n in rows}


def wraps_by_version(conn: Connection) -> dict[int, int]:
    rows = conn.execute(select(kek_usage.c.kek_version, kek_usage.c.wraps))
    return {int(v): int(n) for v, n in rows}


def retired_versions(conn: Connection) -> set[int]:
    rows = conn.execute(select(kek_usage.c.kek_version).where(kek_usage.c.retired_at.is_not(None)))
    return {int(v) for (v,) in rows}


def superseded_versions(conn: Connection) -> set[int]:
    rows = conn.execute(
        select(kek_usage.c.kek_version).where(kek_usage.c.superseded_at.is_not(None))
    )
    return {int(v) for (v,) in rows}


@dataclass(frozen=True)
class KekStatus:
    """One KEK version as ``cdp keys status`` shows it."""

    version: int
    current: bool
    retired: bool
    created_at: str
    deks: int
    wraps: int
    superseded: bool = False

    @property
    def state(self) -> str:
        """``current``; ``retired`` (destroyed); ``superseded`` (``rewrap`` moved its keys:
        nothing new is wrapped under it); else ``old`` (a rotation left it behind)."""
        if self.current:
            return "current"
        if self.retired:
            return "retired"
        return "superseded" if self.superseded else "old"


def kek_statuses(conn: Connection, versions: list[KeyVersion], current: int) -> list[KekStatus]:
    """The key file's ``versions`` with the key store's counts and marks (one snapshot)."""
    deks = deks_by_version(conn)
    wraps = wraps_by_version(conn)
    retired = retired_versions(conn)
    superseded = superseded_versions(conn)
    return [
        KekStatus(
            version=v.version,
            current=v.version == current,
            retired=v.retired_at is not None or v.version in retired,
            created_at=v.created_at,
            deks=deks.get(v.version, 0),
            wraps=wraps.get(v.version, 0),
            superseded=v.version in superseded,
        )
        for v in versions
    ]
