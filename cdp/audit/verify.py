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
(no ORM, no per-row objects). A large log is split into ranges of sequence numbers verified at
once, one process per core (:mod:`cdp.audit.verify_range` says why that finds the same first
problem as one pass).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from subprocess import PIPE, Popen
from typing import Any, Final

import cdp
from cdp.audit.chain import GENESIS_HASH
from cdp.audit.checkpoint import Checkpoint
from cdp.audit.verify_range import (
    COLUMNS,
    RangeResult,
    SeqRange,
    Source,
    batches,
    job_text,
    result_from_text,
    verify_range,
)
from cdp.logging import get_logger
from cdp.runtime import Runtime

log = get_logger("cdp.audit")

PARALLEL_MIN_RECORDS: Final = 100_000
"""Below this many records one pass is quicker than starting worker processes."""
MAX_WORKERS: Final = 8


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


def _rows(runtime: Runtime, columns: str = COLUMNS) -> Iterator[list[tuple[Any, ...]]]:
    """Batches of raw rows in sequence order (what streaming the log alone costs)."""
    engine = runtime.data_engine
    raw = engine.raw_connection()
    try:
        yield from batches(
            raw.driver_connection,
            engine.dialect.name,
            f"SELECT {columns} FROM audit_log ORDER BY seq",  # noqa: S608
        )
    finally:
        raw.close()


def _head(runtime: Runtime) -> tuple[int, str] | None:
    with runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        row = conn.exec_driver_sql("SELECT seq, hash FROM audit_head WHERE id = 1").first()
    return (int(row[0]), str(row[1])) if row is not None else None


def _bounds(runtime: Runtime) -> tuple[int, int] | None:
    with runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        row = conn.exec_driver_sql("SELECT min(seq), max(seq) FROM audit_log").first()
    return (int(row[0]), int(row[1])) if row is not None and row[0] is not None else None


def _worker_count(runtime: Runtime, workers: int | None, span: int) -> int:
    if workers is not None:
        return max(1, workers)
    configured = runtime.settings.audit_verify_workers
    if configured:
        return configured
    if span < PARALLEL_MIN_RECORDS:
        return 1
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))


def _split(bounds: tuple[int, int] | None, parts: int) -> list[SeqRange]:
    """``parts`` ranges covering every possible seq (the outer ones open-ended, so a stray
    record below the first or above the last is read too)."""
    if bounds is None or parts <= 1:
        return [SeqRange(None, None)]
    lo, hi = bounds
    step = max(1, (hi - lo + 1) // parts)
    cuts = sorted({min(hi, lo - 1 + step * i) for i in range(1, parts)})
    edges: list[int | None] = [None, *cuts, None]
    return [SeqRange(a, b) for a, b in pairwise(edges)]


def _source(runtime: Runtime) -> Source:
    url = runtime.data_engine.url
    if url.get_backend_name() == "sqlite":
        return Source("sqlite", str(url.database))
    return Source(
        "postgresql", url.set(drivername="postgresql").render_as_string(hide_password=False)
    )


def _start_worker(source: Source, rng: SeqRange, checkpoint_seq: int | None) -> Popen[bytes]:
    """A fresh interpreter verifying one range (``python -m cdp.audit.verify_range``): it
    imports only that module, and gets its job, database address included, on stdin."""
    package_root = str(Path(cdp.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (package_root, env.get("PYTHONPATH"))))
    proc = Popen(
        [sys.executable, "-m", "cdp.audit.verify_range"],
        stdin=PIPE,
        stdout=PIPE,
        stderr=PIPE,
        env=env,
    )
    assert proc.stdin is not None
    proc.stdin.write(job_text(source, rng, checkpoint_seq).encode())
    proc.stdin.close()
    proc.stdin = None  # sent; communicate() only reads
    return proc


def _verify_ranges(
    runtime: Runtime, ranges: list[SeqRange], checkpoint_seq: int | None
) -> list[RangeResult]:
    """Every range verified at once: the first here, each other one in a worker process (a
    range whose worker fails is verified here afterwards, so a failure costs time, not truth)."""
    engine = runtime.data_engine

    def here(rng: SeqRange) -> RangeResult:
        raw = engine.raw_connection()
        try:
            return verify_range(raw.driver_connection, engine.dialect.name, rng, checkpoint_seq)
        finally:
            raw.close()

    if len(ranges) == 1:
        return [here(ranges[0])]
    source = _source(runtime)
    workers: list[Popen[bytes] | None] = []
    for rng in ranges[1:]:
        try:
            workers.append(_start_worker(source, rng, checkpoint_seq))
        except OSError as exc:
            log.warning("audit_verify_worker_not_started", error=type(exc).__name__)
            workers.append(None)
    try:
        results = [here(ranges[0])]
        for rng, proc in zip(ranges[1:], workers, strict=True):
            part = _collect(proc) if proc is not None else None
            results.append(part if part is not None else here(rng))
    finally:  # an error here leaves no worker running
        for proc in workers:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def _collect(proc: Popen[bytes]) -> RangeResult | None:
    out, err = proc.communicate()
    if proc.returncode == 0:
        try:
            return result_from_text(out.decode())
        except (ValueError, TypeError, KeyError):
            pass
    # The audit log holds no personal data, but a driver's message is still not logged whole.
    last = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
    log.warning("audit_verify_worker_failed", status=proc.returncode, error=last[0][:200])
    return None


def verify_chain(
    *, runtime: Runtime, checkpoint: Checkpoint | None = None, workers: int | None = None
) -> VerifyResult:
    """Verify the whole chain (and the tail against ``checkpoint`` if given).

    ``workers`` ranges are verified at once (default: the ``audit_verify_workers`` setting, or
    one per available core when the log holds at least :data:`PARALLEL_MIN_RECORDS`)."""
    started = time.perf_counter()
    expected = 1
    prev_hex = GENESIS_HASH
    count = 0
    # A checkpoint of the empty log (taken right after `cdp init`) names record 0, which is no
    # row: its hash is the genesis hash, whatever was appended since.
    checkpoint_hash: str | None = (
        GENESIS_HASH if checkpoint is not None and checkpoint.seq == 0 else None
    )

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

    bounds = _bounds(runtime)
    span = bounds[1] - bounds[0] + 1 if bounds is not None else 0
    ranges = _split(bounds, _worker_count(runtime, workers, span))
    cp_seq = checkpoint.seq if checkpoint is not None else None
    parts = _verify_ranges(runtime, ranges, cp_seq)
    for part in parts:
        if part.first_seq is None:
            continue
        if part.first_seq != expected:
            return result(expected, f"record {expected} is missing (next is {part.first_seq})")
        if part.first_prev != prev_hex:
            seq = part.first_seq
            return result(seq, f"record {seq} does not follow record {seq - 1}")
        count += part.count
        if part.last_seq is not None and part.last_hash is not None:
            expected, prev_hex = part.last_seq + 1, part.last_hash
        checkpoint_hash = part.checkpoint_hash or checkpoint_hash
        if part.problem is not None:
            return result(part.bad_seq, part.problem)
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
    if head is not None and head[0] == last and head[1] != prev_hex:
        return result(
            last,
            f"the chain head's hash differs from record {last}'s: the log was rewritten "
            "(records altered and hashed again)",
        )
    for part in parts:  # in sequence order: the first record whose index rows are wrong
        if part.index_bad_seq is not None:
            return result(part.index_bad_seq, part.index_problem)
    return result(None, None)
