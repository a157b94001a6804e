"""Verifying one range of the audit chain, on its own database connection.

Each record's link can be checked on its own: its hash must equal SHA-256(its stored
``prev_hash`` || its canonical bytes), and its ``prev_hash`` must equal the hash stored on the
record before it. So the chain splits into ranges of sequence numbers verified at the same time,
one process each (``python -m cdp.audit.verify_range``; see :mod:`cdp.audit.verify`). Inside a
range every link is checked here; the links between ranges (a range's first record against the
previous range's last) are checked when the results are joined. The first problem of the whole
chain is then the first problem of the first range that has one, exactly what a single pass in
sequence order finds.

This module imports nothing heavy, so a worker process starts quickly.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import Any, Final

from cdp.audit.chain import ENCODING_VERSION, _dumps, format_at

BATCH: Final = 20_000

COLUMNS: Final = (
    "seq, at, principal_id, principal_name, roles, action, resource, subject_ids, fields, "
    "purpose, outcome, request_id, client, prev_hash, hash"
)
# SQLite builds the canonical array itself: json_array() is a compact JSON encoder (UTF-8 kept,
# same escapes as Python's json for the characters records may hold), so Python only hashes.
# The stored time is SQLAlchemy's 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC, naive): its every character
# is covered, the separator too (any other text is NULL in the array, which no record hashed).
_SQLITE_CANONICAL: Final = (
    "seq, json_array(1, seq, CASE WHEN length(at) = 26 AND substr(at, 11, 1) = ' ' "
    "THEN substr(at, 1, 10) || 'T' || substr(at, 12) || 'Z' END, principal_id, "
    "principal_name, roles, action, resource, subject_ids, fields, purpose, outcome, request_id, "
    "client), prev_hash, hash"
)
_TEXT: Final = (str, type(None))
_WRONG_TYPE: Final = "\x00"
"""The canonical text of a record holding a value no writer stores (a BLOB, on SQLite): it never
matches the record's hash, so the record is reported as altered."""


@dataclass(frozen=True, slots=True)
class SeqRange:
    """Records with ``after < seq <= upto``; ``None`` leaves that side open."""

    after: int | None
    upto: int | None

    def where(self) -> str:
        """The SQL condition (integers only, so inlining them is safe)."""
        condition = self.condition("seq")
        return f" WHERE {condition}" if condition != "TRUE" else ""

    def condition(self, column: str) -> str:
        """``column`` within the range, as SQL (``TRUE`` when the range is open on both sides)."""
        parts = []
        if self.after is not None:
            parts.append(f"{column} > {int(self.after)}")
        if self.upto is not None:
            parts.append(f"{column} <= {int(self.upto)}")
        return " AND ".join(parts) or "TRUE"


@dataclass(frozen=True, slots=True)
class RangeResult:
    """What one range holds: its first record's seq and stored ``prev_hash`` (for the link to
    the range before), the last good record, how many were good, and the first problem."""

    first_seq: int | None
    first_prev: str | None
    last_seq: int | None
    last_hash: str | None
    count: int
    bad_seq: int | None = None
    problem: str | None = None
    checkpoint_hash: str | None = None
    index_bad_seq: int | None = None
    """The first record of the range whose ``audit_subjects`` rows are wrong (see
    :func:`check_index`), checked when the range's chain is intact."""
    index_problem: str | None = None


@dataclass(frozen=True, slots=True)
class Source:
    """Where a worker reads the log: a SQLite file or a PostgreSQL conninfo (picklable)."""

    dialect: str
    target: str


def _sqlite_canonical(row: tuple[Any, ...]) -> str:
    """A SQLite record's canonical text, built in Python (as ``_SQLITE_CANONICAL`` builds it in
    SQL), for records SQLite's ``json_array`` refuses: a BLOB gives :data:`_WRONG_TYPE`."""
    seq, at, *rest = row
    if not isinstance(at, str) or len(at) != 26 or at[10] != " ":
        return _WRONG_TYPE
    if not all(isinstance(v, _TEXT) for v in rest):
        return _WRONG_TYPE
    return _dumps([ENCODING_VERSION, seq, at[:10] + "T" + at[11:] + "Z", *rest])


def _sqlite_batches(driver: Any, rng: SeqRange) -> Iterator[list[tuple[Any, str, str, str]]]:
    """SQLite's canonical rows of ``rng``, built by SQLite; from a batch ``json_array`` refuses (a
    value stored as a BLOB, which no writer stores) on, built in Python record by record."""
    last: int | None = None
    try:
        for batch in batches(
            driver,
            "sqlite",
            f"SELECT {_SQLITE_CANONICAL} FROM audit_log{rng.where()} ORDER BY seq",  # noqa: S608
        ):
            yield batch
            last = batch[-1][0]
    except sqlite3.OperationalError:
        rest = SeqRange(after=last if last is not None else rng.after, upto=rng.upto)
        columns = COLUMNS.rsplit(", prev_hash", 1)[0]
        sql = f"SELECT {columns}, prev_hash, hash FROM audit_log{rest.where()} ORDER BY seq"  # noqa: S608
        for raw in batches(driver, "sqlite", sql):
            yield [(r[0], _sqlite_canonical(r[:-2]), r[-2], r[-1]) for r in raw]


def batches(driver: Any, dialect: str, sql: str) -> Iterator[list[tuple[Any, ...]]]:
    """Batches of raw rows from a DB-API connection (a server-side cursor on PostgreSQL)."""
    if dialect == "postgresql":
        with driver.transaction(), driver.cursor(name="cdp_audit_verify") as cur:
            cur.itersize = BATCH
            cur.execute(sql)
            while batch := cur.fetchmany(BATCH):
                yield batch
        return
    cur = driver.cursor()
    try:
        cur.execute(sql)
        while batch := cur.fetchmany(BATCH):
            yield batch
    finally:
        cur.close()


def _canonical_batches(
    driver: Any, dialect: str, rng: SeqRange
) -> Iterator[list[tuple[int, str, str, str]]]:
    """(seq, canonical text, prev_hash, hash) per record of ``rng``, in sequence order."""
    where = rng.where()
    if dialect == "sqlite":
        yield from _sqlite_batches(driver, rng)
        return
    fmt: Callable[[Any], str] = format_at
    dumps = _dumps
    version = ENCODING_VERSION
    sql = f"SELECT {COLUMNS} FROM audit_log{where} ORDER BY seq"  # noqa: S608
    for batch in batches(driver, dialect, sql):
        yield [
            (
                seq,
                dumps([version, seq, fmt(at), pid, pn, ro, ac, re, si, fi, pu, ou, ri, cl]),
                ph,
                h,
            )
            for seq, at, pid, pn, ro, ac, re, si, fi, pu, ou, ri, cl, ph, h in batch
        ]


# The subject index (``audit_subjects``: one ``(subject_id, seq)`` row a subject a record names)
# is what the subject access report reads; the chain does not cover it. It matches the records of a
# range when (1) every subject each record names has its row, and (2) the range has as many rows
# as there are distinct (subject, record) pairs: with (1), any other row makes (2) fail. Both are
# set-based: one probe of the index's key a pair, one count of each side. Only when they fail are
# the rows of the index looked up in the records, to name the first wrong one.
_ELEMENTS: Final = {
    "sqlite": "json_each({0}) AS {1}",
    "postgresql": "jsonb_array_elements_text({0}::jsonb) AS {1}(value)",
}
_MISSING: Final = (  # the range on s.seq too: PostgreSQL may hash the index side, the range's only
    "SELECT min(l.seq) FROM audit_log l CROSS JOIN {elements} WHERE {range} AND NOT EXISTS "
    "(SELECT 1 FROM audit_subjects s WHERE s.subject_id = j.value AND s.seq = l.seq "
    "AND {index_range})"
)
# Distinct subjects a record names: '[]' none; '["<32 hex>"]' (a read: length 36) one; otherwise
# counted. The shortcut can only count too few for a list the writer did not make, which makes
# the counts differ (a false alarm on a forged chain), never match by accident.
_PAIRS: Final = (
    "SELECT coalesce(sum(CASE WHEN subject_ids = '[]' THEN 0 "
    "WHEN length(subject_ids) = 36 AND substr(subject_ids, 1, 2) = '[\"' "
    "AND substr(subject_ids, 35, 2) = '\"]' THEN 1 "
    "ELSE (SELECT count(DISTINCT e.value) FROM {elements}) END), 0) FROM audit_log l "
    "WHERE {range}"
)
_LINKS: Final = "SELECT count(*) FROM audit_subjects s WHERE {range}"
_EXTRA: Final = (
    "SELECT min(s.seq) FROM audit_subjects s WHERE {range} AND NOT EXISTS "
    "(SELECT 1 FROM audit_log l CROSS JOIN {elements} WHERE l.seq = s.seq "
    "AND j.value = s.subject_id)"
)
_EXISTS: Final = "SELECT count(*) FROM audit_log WHERE seq = {seq}"


@contextmanager
def _snapshot(driver: Any, dialect: str) -> Iterator[Callable[[str], Any]]:
    """A read transaction on one snapshot; yields a function running a one-value query."""

    def on(cur: Any) -> Callable[[str], Any]:
        def value(sql: str) -> Any:
            cur.execute(sql)
            return cur.fetchone()[0]

        return value

    if dialect == "postgresql":
        with driver.transaction(), driver.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield on(cur)
        return
    cur = driver.cursor()
    try:
        cur.execute("BEGIN")
        try:
            yield on(cur)
        finally:
            cur.execute("ROLLBACK")
    finally:
        cur.close()


def check_index(driver: Any, dialect: str, rng: SeqRange) -> tuple[int | None, str | None]:
    """Whether ``audit_subjects`` matches the records of ``rng`` (their ``subject_ids``, which
    the chain covers): the first record whose index rows are wrong and why, or ``(None, None)``.
    One read transaction, so that appends meanwhile cannot make the counts differ."""
    elements = _ELEMENTS[dialect]
    log_range, index_range = rng.condition("l.seq"), rng.condition("s.seq")
    with _snapshot(driver, dialect) as one:
        missing = one(
            _MISSING.format(
                elements=elements.format("l.subject_ids", "j"),
                range=log_range,
                index_range=index_range,
            )
        )
        pairs = one(_PAIRS.format(elements=elements.format("l.subject_ids", "e"), range=log_range))
        links = one(_LINKS.format(range=index_range))
        if missing is None and int(pairs) == int(links):
            return None, None
        extra = one(
            _EXTRA.format(elements=elements.format("l.subject_ids", "j"), range=index_range)
        )
        exists = extra is not None and one(_EXISTS.format(seq=int(extra))) > 0
    if missing is not None and (extra is None or missing <= extra):
        return int(missing), (
            f"record {missing} names a subject that the subject index leaves out "
            "(its subject access report would not show the record)"
        )
    if extra is not None:
        why = (
            f"the subject index attributes record {extra} to a subject it does not name"
            if exists
            else f"the subject index lists record {extra}, which is not in the log"
        )
        return int(extra), why
    first = (rng.after or 0) + 1
    return first, f"the subject index does not match the records from {first} on"


def verify_range(
    driver: Any, dialect: str, rng: SeqRange, checkpoint_seq: int | None = None
) -> RangeResult:
    """Check every link inside ``rng`` (the first record's ``prev_hash`` is taken as given)."""
    sha256 = hashlib.sha256
    first_seq: int | None = None
    first_prev: str | None = None
    expected = 0
    prev = b""
    prev_hex = ""
    count = 0
    cp_hash: str | None = None

    def result(bad: int | None = None, problem: str | None = None) -> RangeResult:
        good = count > 0
        return RangeResult(
            first_seq=first_seq,
            first_prev=first_prev,
            last_seq=expected - 1 if good else None,
            last_hash=prev_hex if good else None,
            count=count,
            bad_seq=bad,
            problem=problem,
            checkpoint_hash=cp_hash,
        )

    for batch in _canonical_batches(driver, dialect, rng):
        for seq, canon, ph, h in batch:
            if first_seq is None:
                first_seq, first_prev, expected, prev_hex = seq, ph, seq, ph
                try:
                    prev = bytes.fromhex(ph)
                except (TypeError, ValueError):
                    return result(seq, f"record {seq} does not follow record {seq - 1}")
            if seq != expected:
                return result(expected, f"record {expected} is missing (next is {seq})")
            if ph != prev_hex:
                return result(seq, f"record {seq} does not follow record {seq - 1}")
            digest = sha256(prev + canon.encode()).digest()
            if digest.hex() != h:
                return result(seq, f"record {seq} was altered (its hash does not match)")
            prev = digest
            prev_hex = h
            count += 1
            expected += 1
            if seq == checkpoint_seq:
                cp_hash = h
    index_bad, index_problem = check_index(driver, dialect, rng)
    return replace(result(), index_bad_seq=index_bad, index_problem=index_problem)


def verify_range_at(source: Source, rng: SeqRange, checkpoint_seq: int | None) -> RangeResult:
    """:func:`verify_range` on a connection of its own."""
    if source.dialect == "sqlite":
        conn = sqlite3.connect(source.target)
        try:
            conn.execute("PRAGMA query_only = 1")
            return verify_range(conn, "sqlite", rng, checkpoint_seq)
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(source.target) as pg:
        pg.read_only = True
        return verify_range(pg, "postgresql", rng, checkpoint_seq)


def job_text(source: Source, rng: SeqRange, checkpoint_seq: int | None) -> str:
    """A worker's job as JSON (sent on its stdin, so a database password never shows in ``ps``)."""
    return json.dumps(
        {"source": asdict(source), "range": asdict(rng), "checkpoint_seq": checkpoint_seq}
    )


def result_from_text(text: str) -> RangeResult:
    """A worker's answer, as it printed it."""
    return RangeResult(**json.loads(text))


def main() -> None:
    """The worker: read a job on stdin, verify that range, print the result as JSON."""
    job = json.loads(sys.stdin.read())
    result = verify_range_at(
        Source(**job["source"]), SeqRange(**job["range"]), job["checkpoint_seq"]
    )
    sys.stdout.write(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
