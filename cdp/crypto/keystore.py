"""The key store: each subject's data key (DEK), wrapped by a KEK version, in its own database.

It is kept apart from the data database so that a backup of the data never carries keys, and so
that destroying a DEK (crypto-shredding) erases the subject's values in every copy of the data.
Bulk paths use SQLAlchemy Core, never the ORM row by row; the tables and the driver-level
reads and writes are in :mod:`cdp.crypto.keystore_tables`.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from cdp.clock import utcnow
from cdp.crypto.keystore_tables import (
    LOAD_BATCH,
    KekStatus,
    data_keys,
    deks_by_version,
    fetch_wrapped,
    fetch_wrapped_between,
    insert_keys,
    kek_statuses,
    kek_usage,
    wraps_by_version,
)
from cdp.crypto.provider import KeyProvider, WrappedKey
from cdp.crypto.scrub import zero_deleted_content
from cdp.db.dense import read_dense
from cdp.db.types import UtcDateTime
from cdp.errors import (
    ConflictError,
    KeyMaterialError,
    KeyShreddedError,
    KeyUsageExhaustedError,
)

DEK_BYTES = 32

WRAP_ATTEMPTS = 3
"""Tries of :meth:`KeyStore.create` when the key store refuses the version it wrapped under
(the process's key material was older than the key store's record), reloading in between."""


@dataclass(frozen=True, slots=True)
class DataKey:
    """An unwrapped data key. Its repr never shows the key."""

    subject_id: str
    version: int
    key: bytes

    def __repr__(self) -> str:
        return f"DataKey(subject_id={self.subject_id!r}, version={self.version})"


def _context(subject_id: str) -> bytes:
    return subject_id.encode()


class _VersionClosedError(Exception):
    """The key store refused to count wraps under a superseded or retired KEK version."""

    def __init__(self, version: int, state: str) -> None:
        super().__init__(version, state)
        self.version = version
        self.state = state


class KeyStore:
    """Creates, unwraps, re-wraps and destroys data keys."""

    def __init__(self, engine: Engine, provider: KeyProvider, *, max_wraps: int) -> None:
        self.engine = engine
        self.provider = provider
        self.max_wraps = max_wraps
        zero_deleted_content(engine)  # no copy of a destroyed key stays in the file

    def __repr__(self) -> str:
        return f"KeyStore(backend={self.engine.dialect.name}, provider={self.provider.name})"

    # -- usage counter and the versions' state --------------------------------------------
    @staticmethod
    def _ensure_rows(conn: Connection, versions: Iterable[int]) -> None:
        ins = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(kek_usage)
        for version in sorted(set(versions)):
            conn.execute(ins.values(kek_version=version, wraps=0).on_conflict_do_nothing())

    def _count_wraps(self, conn: Connection, version: int, n: int) -> None:
        """Count ``n`` wraps under ``version`` inside the transaction that stores them.

        This is where a wrap under a superseded or retired version is refused: the update takes
        the version's row lock (PostgreSQL; SQLite's write lock is already held from BEGIN), so
        it orders itself against ``rewrap`` and ``retire``, which mark the row under the same
        lock. Marked first: this update sees the mark and the wraps are refused. Counted first:
        ``retire`` sees the stored keys and refuses."""
        self._ensure_rows(conn, [version])
        total, superseded, retired = conn.execute(
            update(kek_usage)
            .where(kek_usage.c.kek_version == version)
            .values(wraps=kek_usage.c.wraps + n)
            .returning(kek_usage.c.wraps, kek_usage.c.superseded_at, kek_usage.c.retired_at)
        ).one()
        if retired is not None:
            raise _VersionClosedError(version, "retired")
        if superseded is not None:
            raise _VersionClosedError(version, "superseded")
        if total > self.max_wraps:
            raise KeyUsageExhaustedError(
                f"key-encryption key version {version} reached its usage bound "
                f"({self.max_wraps} wraps); run `cdp keys rotate`, then `cdp keys rewrap`"
            )

    # -- create / read -------------------------------------------------------------------
    def _wrap_rows(self, keys: list[DataKey], now: datetime) -> tuple[int, list[dict[str, Any]]]:
        """``keys`` wrapped under the current KEK version (one version for all)."""
        version, blobs = self.provider.wrap_many([(k.key, _context(k.subject_id)) for k in keys])
        return version, [
            {
                "subject_id": k.subject_id,
                "dek_version": k.version,
                "kek_version": version,
                "wrapped": blob,
                "created_at": now,
            }
            for k, blob in zip(keys, blobs, strict=True)
        ]

    def create(self, subject_ids: Sequence[str]) -> list[DataKey]:
        """New DEKs for new subjects, wrapped under the current KEK, in one transaction.

        The version is the provider's current one (its key file checked at most once a second),
        and the key store confirms it in the transaction that stores the keys: if ``rewrap`` or
        ``retire`` closed it meanwhile (another process rotated), nothing is stored, the key
        material is read again and the keys are wrapped under its current version. A process
        whose material has no newer version fails (KeyMaterialError) rather than store a key
        that retiring its version would make unreadable."""
        if not subject_ids:
            return []
        now = utcnow()
        keys = [DataKey(s, 1, secrets.token_bytes(DEK_BYTES)) for s in subject_ids]
        for _ in range(WRAP_ATTEMPTS):
            version, rows = self._wrap_rows(keys, now)
            try:
                with self.engine.begin() as conn:
                    self._count_wraps(conn, version, len(rows))
                    insert_keys(conn, rows)
                return keys
            except _VersionClosedError as closed:
                self.provider.reload()
                if self.provider.current_version() == version:
                    raise self._stale(closed) from None
        raise KeyMaterialError("the current key-encryption key kept changing; try again")

    @contextlib.contextmanager
    def wrapping(self, items: Sequence[tuple[bytes, bytes]]) -> Iterator[tuple[int, list[bytes]]]:
        """Wrap ``(secret, context)`` pairs stored outside the key store (webhook signing
        secrets), under the same guard as :meth:`create`: the wraps are counted, and a
        superseded or retired version refused (reloading the key material, as ``create``
        does), in a key-store transaction that stays open while the caller stores them and
        commits *its* transaction inside the ``with``. So ``retire``, which marks the version
        under the same row lock and then counts what is stored, sees them."""
        for _ in range(WRAP_ATTEMPTS):
            version, blobs = self.provider.wrap_many(items)
            try:
                with self.engine.connect() as conn, conn.begin():  # rolled back on any error
                    self._count_wraps(conn, version, len(blobs))
                    yield version, blobs
                    return
            except _VersionClosedError as closed:
                self.provider.reload()
                if self.provider.current_version() == version:
                    raise self._stale(closed) from None
        raise KeyMaterialError("the current key-encryption key kept changing; try again")

    @staticmethod
    def _stale(closed: _VersionClosedError) -> KeyMaterialError:
        return KeyMaterialError(
            f"key-encryption key version {closed.version} is {closed.state} in the key store "
            "and this process's key material has no newer version; give it the current key "
            "material (the key file, or CDP_MASTER_KEYS) and restart it"
        )

    def load(self, subject_ids: Iterable[str]) -> dict[str, DataKey]:
        """Unwrap the DEKs of ``subject_ids``; shredded or unknown subjects are left out."""
        return {s: DataKey(s, v, key) for s, v, key in self.unwrapped(subject_ids)}

    def unwrapped(
        self, subject_ids: Iterable[str], *, dense: bool = False
    ) -> list[tuple[str, int, bytes]]:
        """``(subject_id, dek_version, dek)`` of the subjects that have a key (bulk path:
        exports unwrap a million; callers must not log these tuples, they hold the key).

        One ``IN`` query per 1,000 ids in one read transaction, through the driver's cursor on
        SQLite and PostgreSQL (plain tuples, no per-row result objects), and the wrapped keys
        unwrapped together (:meth:`KeyProvider.unwrap_many`).

        ``dense``: the caller expects most keys between the smallest and the largest of
        ``subject_ids`` to be wanted (an export's chunk of a large audience). Then the keys are
        read as that one range of the primary key (cheaper than a lookup per id), and only the
        wanted ones are unwrapped; ids the range did not yield (no key, or ordered otherwise by
        the database's collation) are looked up as usual. When the range holds more than twice
        as many keys as ids, the read stops and falls back to the ``IN`` queries.
        """
        ids = list(dict.fromkeys(subject_ids))
        if not ids:
            return []
        conn = self.engine.connect().execution_options(sqlite_begin="DEFERRED")
        with conn, conn.begin():

            def lookups(wanted: list[str]) -> list[tuple[str, int, int, bytes]]:
                rows: list[tuple[str, int, int, bytes]] = []
                for start in range(0, len(wanted), LOAD_BATCH):
                    rows.extend(fetch_wrapped(conn, wanted[start : start + LOAD_BATCH]))
                return rows

            if dense:
                found = read_dense(
                    ids, lambda a, b, n: fetch_wrapped_between(conn, a, b, n), lookups
                )
            else:
                found = lookups(ids)
        return self.provider.unwrap_many(found)

    def get(self, subject_id: str) -> DataKey:
        found = self.load([subject_id]).get(subject_id)
        if found is None:
            raise KeyShreddedError(
                f"subject {subject_id} has no data key (erased or unknown)", subject_id=subject_id
            )
        return found

    # -- shred ---------------------------------------------------------------------------
    def shred(self, subject_ids: Sequence[str]) -> int:
        """Destroy the DEKs of ``subject_ids``; their ciphertexts never decrypt again."""
        with self.engine.begin() as conn:
            result = conn.execute(data_keys.delete().where(data_keys.c.subject_id.in_(subject_ids)))
        return int(result.rowcount or 0)

    def page_ids(self, after: str | None, limit: int) -> list[tuple[str, datetime]]:
        """``(owner id, created_at)`` of up to ``limit`` data keys after ``after``, in id order
        (one range read of the primary key: walk the whole store by passing the last id)."""
        query = select(data_keys.c.subject_id, data_keys.c.created_at)
        if after is not None:
            query = query.where(data_keys.c.subject_id > after)
        with self.engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
            rows = conn.execute(query.order_by(data_keys.c.subject_id).limit(limit)).all()
        return [(r[0], r[1]) for r in rows]

    # -- rotation ------------------------------------------------------------------------
    def rewrap(self, *, batch_size: int = 1000) -> int:
        """Re-wrap every DEK not under the current KEK version; the data is not touched.

        First the older versions are marked superseded in the key store (:meth:`supersede_below`),
        so that no process wraps a new DEK under one of them from then on: when the rewrap has
        finished, no DEK is left under them and ``retire`` can go ahead. Each batch is its own
        transaction: an interrupted rewrap leaves every DEK readable (under its old or its new
        version) and can simply be run again.
        """
        self.provider.reload()  # the key file as it is now, not as this process first read it
        target = self.provider.current_version()
        self.supersede_below(target)
        done = 0
        while True:
            with self.engine.begin() as conn:
                rows = conn.execute(
                    select(data_keys.c.subject_id, data_keys.c.kek_version, data_keys.c.wrapped)
                    .where(data_keys.c.kek_version != target)
                    .limit(batch_size)
                ).all()
                if not rows:
                    return done
                now = utcnow()
                updates = []
                for row in rows:
                    ctx = _context(row.subject_id)
                    old = WrappedKey(row.kek_version, row.wrapped)
                    dek = self.provider.unwrap(old, context=ctx)
                    new = self.provider.wrap(dek, context=ctx)
                    if new.kek_version != target:
                        raise KeyMaterialError("the current KEK version changed during rewrap")
                    updates.append((row.subject_id, new.blob))
                try:
                    # the version's row lock first (runs of rewrap queue here, not on keys),
                    # then the count of the keys moved: one erased since the read is not
                    self._count_wraps(conn, target, 0)
                except _VersionClosedError as closed:
                    raise self._stale(closed) from None
                moved = sum(
                    int(
                        conn.execute(
                            update(data_keys)
                            .where(data_keys.c.subject_id == subject_id)
                            .values(kek_version=target, wrapped=blob, rewrapped_at=now)
                        ).rowcount
                        or 0
                    )
                    for subject_id, blob in updates
                )
                self._count_wraps(conn, target, moved)  # under the lock: not closed since
                done += moved

    def supersede_below(self, version: int) -> None:
        """Record in the key store that every KEK version older than ``version`` is superseded:
        from the commit on, a wrap under one of them is refused in its own transaction (the
        process wrapping reloads its key material and uses the current version). Idempotent."""
        older = [v.version for v in self.provider.versions() if v.version < version]
        if not older:
            return
        with self.engine.begin() as conn:
            self._ensure_rows(conn, older)
            conn.execute(
                update(kek_usage)
                .where(kek_usage.c.kek_version < version, kek_usage.c.superseded_at.is_(None))
                .values(superseded_at=utcnow())
            )

    def deks_per_version(self) -> dict[int, int]:
        with self.engine.connect() as conn:
            return deks_by_version(conn)

    def wraps_per_version(self) -> dict[int, int]:
        with self.engine.connect() as conn:
            return wraps_by_version(conn)

    def status(self) -> list[KekStatus]:
        self.provider.reload()
        with self.engine.connect() as conn:  # one connection, one snapshot of the three counts
            return kek_statuses(conn, self.provider.versions(), self.provider.current_version())

    def check_retirable(self, version: int) -> None:
        """Raise :class:`KeyMaterialError` unless ``version`` is a KEK version of the key
        material (read again first) other than the current one. The data keys still wrapped
        under it are counted by :meth:`retire` itself, under the version's lock."""
        self.provider.reload()
        if version not in {v.version for v in self.provider.versions()}:
            raise KeyMaterialError(f"no key-encryption key of version {version}")
        if version == self.provider.current_version():
            raise KeyMaterialError(f"key-encryption key version {version} is current; rotate first")

    def retire(self, version: int, *, secrets_in_use: Callable[[int], int] | None = None) -> bool:
        """Retire KEK ``version``; refused while any DEK, or any of the ``secrets_in_use(version)``
        secrets stored elsewhere (webhook signing secrets), is still wrapped under it.

        In one key-store transaction the version is marked retired (and superseded), then its
        DEKs and secrets counted; the mark is rolled back if there are any. It is taken before
        the counts, under the version's row lock, so a concurrent :meth:`create` or
        :meth:`wrapping` either committed before (counted: refused) or meets the mark (its wrap
        is refused and done again under the current version): nothing can be stored under a
        retired version. Only then is the key material destroyed in the key file. Returns False
        when the material is managed outside cdp (``CDP_MASTER_KEYS``): the key store refuses
        the version from now on, and its key is to be removed from that JSON on every process.
        """
        self.check_retirable(version)
        now = utcnow()
        with self.engine.begin() as conn:
            self._ensure_rows(conn, [version])
            conn.execute(
                update(kek_usage)
                .where(kek_usage.c.kek_version == version)
                .values(
                    retired_at=func.coalesce(kek_usage.c.retired_at, literal(now, UtcDateTime())),
                    superseded_at=func.coalesce(
                        kek_usage.c.superseded_at, literal(now, UtcDateTime())
                    ),
                )
            )
            in_use = conn.execute(
                select(func.count())
                .select_from(data_keys)
                .where(data_keys.c.kek_version == version)
            ).scalar_one()
            if in_use:
                raise KeyMaterialError(
                    f"key-encryption key version {version} still wraps {in_use} data keys; "
                    "run `cdp keys rewrap` first"
                )
            held = secrets_in_use(version) if secrets_in_use is not None else 0
            if held:
                raise ConflictError(
                    f"{held} webhook signing secret(s) are wrapped under KEK version {version}: "
                    "run `cdp keys rewrap` first. Nothing was retired"
                )
        if self.provider.read_only:
            return False
        self.provider.retire(version)
        return True
