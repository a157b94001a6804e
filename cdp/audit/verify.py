"""Verifying the audit chain: stream every record in sequence order, recompute its hash, and name
the first record that is missing, altered, reordered or inserted.

For each record ``n`` (expected ``n = 1, 2, ...``):

* its ``seq`` must be ``n`` — otherwise record ``n`` was deleted (or records were renumbered);
* its ``prev_hash`` must be the previous record's hash — otherwise something was inserted,
  deleted or moved before it;
* its ``hash`` must equal SHA-256(prev hash || canonical bytes) — otherwise it was edited.

A signed checkpoint (:mod:`cdp.audit.checkpoint`) extends this to the tail: a log that ends before
the checkpoint's sequence number, or whose record at that number has another hash, was truncated
or rewritten. Rows are read with a plain DB-API cursor in large batches and hashed in a tight loop
(no ORM, no per-row objects), which is what makes >200k records/s possible.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from cdp.audit.chain import ENCODING_VERSION, GENESIS_HASH, _dumps, format_at
from cdp.audit.checkpoint import Checkpoint
from cdp.runtime import Runtime

BATCH: Final = 20_000
_COLUMNS: Final = (
    "seq, at, principal_id, principal_name, roles, action, resource, subject_ids, fields, "
    "purpose, outcome, request_id, client, prev_hash, hash"
)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of a verification: ``ok``, or the first bad sequence number and why."""

    ok: bool
    records: int
    last_seq: int
    last_hash: str
    first_bad_seq: int | None
    problem: str | None
    seconds: float

    @property
    def rate(self) -> float:
        """Records verified per second."""
        return self.records / self.seconds if self.seconds > 0 else float("inf")


def _sqlite_at(value: Any) -> str:
    # SQLAlchemy stores SQLite datetimes as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC, naive).
    if isinstance(value, str) and len(value) == 26:
        return value[:10] + "T" + value[11:] + "Z"
    if isinstance(value, datetime):
        return format_at(value)
    return format_at(datetime.fromisoformat(str(value)).replace(tzinfo=UTC))


def _rows(runtime: Runtime, columns: str = _COLUMNS) -> Iterator[list[tuple[Any, ...]]]:
    """Batches of raw rows in sequence order (a server-side cursor on PostgreSQL)."""
    engine = runtime.data_engine
    raw = engine.raw_connection()
    try:
        driver: Any = raw.driver_connection
        if engine.dialect.name == "postgresql":
            with driver.transaction(), driver.cursor(name="cdp_audit_verify") as cur:
                cur.itersize = BATCH
                cur.execute(f"SELECT {columns} FROM audit_log ORDER BY seq")  # noqa: S608
                while batch := cur.fetchmany(BATCH):
                    yield batch
            return
        cur = driver.cursor()
        try:
            cur.execute(f"SELECT {columns} FROM audit_log ORDER BY seq")  # noqa: S608
            while batch := cur.fetchmany(BATCH):
                yield batch
        finally:
            cur.close()
    finally:
        raw.close()


# SQLite builds the canonical array itself: json_array() is a compact JSON encoder (UTF-8 kept,
# same escapes as Python's json for the characters records may hold), so Python only hashes.
_SQLITE_CANONICAL: Final = (
    "seq, json_array(1, seq, substr(at, 1, 10) || 'T' || substr(at, 12) || 'Z', principal_id, "
    "principal_name, roles, action, resource, subject_ids, fields, purpose, outcome, request_id, "
    "client), prev_hash, hash"
)


def _canonical_rows(
    runtime: Runtime, fmt: Callable[[Any], str], dumps: Callable[[Any], str], version: int
) -> Iterator[tuple[int, bytes, str, str]]:
    """(seq, canonical bytes, prev_hash, hash) per record, in sequence order."""
    if runtime.data_engine.dialect.name == "sqlite":
        for batch in _rows(runtime, _SQLITE_CANONICAL):
            for seq, canon, ph, h in batch:
                yield seq, canon.encode(), ph, h
        return
    for batch in _rows(runtime):
        for seq, at, pid, pname, roles, act, res, sids, flds, purp, outc, rid, cli, ph, h in batch:
            canon = dumps(
                [
                    version,
                    seq,
                    fmt(at),
                    pid,
                    pname,
                    roles,
                    act,
                    res,
                    sids,
                    flds,
                    purp,
                    outc,
                    rid,
                    cli,
                ]
            )
            yield seq, canon.encode(), ph, h


def _head(runtime: Runtime) -> tuple[int, str] | None:
    with runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        row = conn.exec_driver_sql("SELECT seq, hash FROM audit_head WHERE id = 1").first()
    return (int(row[0]), str(row[1])) if row is not None else None


def verify_chain(*, runtime: Runtime, checkpoint: Checkpoint | None = None) -> VerifyResult:
    """Verify the whole chain (and the tail against ``checkpoint`` if given)."""
    started = time.perf_counter()
    fmt: Callable[[Any], str] = (
        _sqlite_at if runtime.data_engine.dialect.name == "sqlite" else format_at
    )
    sha256 = hashlib.sha256
    dumps = _dumps
    version = ENCODING_VERSION
    expected = 1
    prev_hex = GENESIS_HASH
    prev = bytes.fromhex(prev_hex)
    count = 0
    checkpoint_hash: str | None = None

    def result(bad: int | None, problem: str | None) -> VerifyResult:
        return VerifyResult(
            ok=bad is None,
            records=count,
            last_seq=expected - 1,
            last_hash=prev_hex,
            first_bad_seq=bad,
            problem=problem,
            seconds=time.perf_counter() - started,
        )

    for seq, canon, ph, h in _canonical_rows(runtime, fmt, dumps, version):
        if seq != expected:
            return result(expected, f"record {expected} is missing (next is {seq})")
        if ph != prev_hex:
            return result(seq, f"record {seq} does not follow record {seq - 1}")
        digest = sha256(prev + canon).digest()
        if digest.hex() != h:
            return result(seq, f"record {seq} was altered (its hash does not match)")
        prev = digest
        prev_hex = h
        count += 1
        expected += 1
        if checkpoint is not None and seq == checkpoint.seq:
            checkpoint_hash = h
    last = expected - 1
    if checkpoint is not None:
        if last < checkpoint.seq:
            return result(
                last + 1,
                f"the log ends at record {last} but the checkpoint covers {checkpoint.seq}: "
                "records were removed from the tail",
            )
        if checkpoint_hash != checkpoint.hash:
            return result(
                checkpoint.seq, f"record {checkpoint.seq} differs from the signed checkpoint"
            )
    head = _head(runtime)
    if head is not None and head[0] > last:
        return result(last + 1, f"the chain head says {head[0]} records but the log ends at {last}")
    return result(None, None)
