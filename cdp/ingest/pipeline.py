"""The batch connector: stream a file, validate, and write it batch by batch.

Each batch (``settings.ingest_batch_size`` records, 5,000 by default) is one transaction: tokens,
resolution, new subjects with their identities and PII, orders, events, consent — all or nothing.
A crash (even SIGKILL) loses at most the batch in flight; running the same file again skips what
was stored (order ids, message ids, consent dedupe keys, identity tokens, unchanged PII), so it
creates no duplicates. Data keys are created just before their batch's transaction; a key whose
batch never committed protects nothing and is harmless.

Rejected records go to a JSON Lines file next to the input (``<input>.rejects.jsonl``): line
number, reason code, field names and a message — never the rejected values.
"""

from __future__ import annotations

import gc
import json
import os
import random
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import IntegrityError, OperationalError

from cdp.clock import Clock, utcnow
from cdp.consent.service import CLOCK_SKEW
from cdp.errors import InvalidInputError, KeyShreddedError, WriteContentionError
from cdp.ingest.batch import BatchContext, Outcome, Reject
from cdp.ingest.collector import collector_paused
from cdp.ingest.consents import write_consents
from cdp.ingest.customers import write_customers
from cdp.ingest.events import write_events
from cdp.ingest.fast_customer import fast_customer
from cdp.ingest.fastpath import fast_order
from cdp.ingest.money import Converter
from cdp.ingest.orders import write_orders
from cdp.ingest.readers import (
    DamagedInputError,
    RawRecord,
    load_mapping,
    printable_path,
    read_records,
)
from cdp.ingest.records import ConsentRecord, CustomerRecord, EventRecord, OrderRecord
from cdp.logging import get_logger
from cdp.observability import count_ingest
from cdp.profiles.merge import SubjectGoneError
from cdp.runtime import Runtime
from cdp.validation import safe_location

log = get_logger("cdp.ingest")


class RecordKind(StrEnum):
    CUSTOMERS = "customers"
    ORDERS = "orders"
    CONSENTS = "consents"
    EVENTS = "events"


Writer = Callable[[BatchContext, Sequence[tuple[int, Any]]], Outcome]
MODELS: dict[RecordKind, type[BaseModel]] = {
    RecordKind.CUSTOMERS: CustomerRecord,
    RecordKind.ORDERS: OrderRecord,
    RecordKind.CONSENTS: ConsentRecord,
    RecordKind.EVENTS: EventRecord,
}
WRITERS: dict[RecordKind, Writer] = {
    RecordKind.CUSTOMERS: write_customers,
    RecordKind.ORDERS: write_orders,
    RecordKind.CONSENTS: write_consents,
    RecordKind.EVENTS: write_events,
}
FAST: dict[type[BaseModel], Callable[[dict[str, Any], dict[str, Any]], BaseModel | None]] = {
    OrderRecord: fast_order,
    CustomerRecord: fast_customer,
}
"""Plain-shape validators in front of a model (None: let the model decide); see fastpath."""
_RETRIES = 5
SQLITE_CACHE_KIB = 32_768
"""Page cache of the SQLite connection that writes a batch (32 MB; the default is 2 MB)."""


@dataclass
class Summary:
    """What one ingestion run did."""

    kind: str
    read: int = 0
    inserted: int = 0
    updated: int = 0
    duplicates: int = 0
    rejected: int = 0
    merges: int = 0
    subjects_created: int = 0
    seconds: float = 0.0
    rejects_path: Path | None = None
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "read": self.read,
            "inserted": self.inserted,
            "updated": self.updated,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "merges": self.merges,
            "subjects_created": self.subjects_created,
            "seconds": round(self.seconds, 3),
            "rejects_file": printable_path(self.rejects_path) if self.rejects_path else None,
            "reasons": dict(sorted(self.reasons.items())),
        }


class IncompleteFileError(InvalidInputError):
    """The input file ended early (a damaged or cut gzip file). Every record read before the
    damage was ingested — stored, a duplicate or rejected —; ``summary`` says what was done."""

    def __init__(self, message: str, *, summary: Summary) -> None:
        super().__init__(message, field="file")
        self.summary = summary


def validation_rejects(position: int, exc: ValidationError) -> Reject:
    """One reject naming every failing field and rule (``hide_input_in_errors``: no values)."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    where = [safe_location(e["loc"], e["type"]) or "record" for e in errors]
    fields = tuple(dict.fromkeys(where))
    messages = "; ".join(f"{at}: {e['msg']}" for at, e in zip(where, errors, strict=True))
    reason = "missing_id" if "missing id" in messages else "invalid"
    return Reject(position, reason, fields, messages[:500])


def run_batch(
    runtime: Runtime,
    writer: Writer,
    items: Sequence[tuple[int, Any]],
    *,
    source: str,
    converter: Converter,
    clock: Clock,
    recorded_by: str,
) -> Outcome:
    """Write one batch in one transaction; retried when a concurrent writer took a token first.

    A subject whose data key is gone while its rows are still there (an erasure between its shred
    and its commit, or a merge's absorbed subject read before the merge committed) rolls the batch
    back too: resolved again, the record is refused by the erasure's tombstones (or follows the
    merge). A subject found so a second time has no key for good (an erasure stopped half-way, a
    key store restored from before an erasure): its records are refused as ``erased``, the rest
    of the batch is written."""
    keyless: set[str] = set()
    waited: set[str] = set()
    attempt = 0
    while True:
        try:
            with runtime.data_engine.begin() as conn:
                if conn.dialect.name == "sqlite":
                    # A batch touches index pages all over the B-trees (random subject ids and
                    # tokens); SQLite's default 2 MB page cache spills and re-reads them per row.
                    conn.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
                ctx = BatchContext(
                    runtime=runtime,
                    conn=conn,
                    now=clock(),
                    source=source,
                    converter=converter,
                    recorded_by=recorded_by,
                    keyless=frozenset(keyless),
                )
                outcome = writer(ctx, items)
        except KeyShreddedError as exc:
            sid = exc.subject_id
            if sid is None or sid in keyless:
                raise
            if sid in waited:
                keyless.add(sid)
                log.warning("ingest batch met a subject without a data key; refusing its records")
            else:
                waited.add(sid)
                log.warning("ingest batch met a subject being erased; retrying")
                backoff(len(waited))
            continue
        except (IntegrityError, OperationalError, SubjectGoneError) as exc:
            attempt += 1
            if attempt == _RETRIES:
                if isinstance(exc, OperationalError):
                    raise  # the database itself (locked, gone): reported as such
                raise WriteContentionError(
                    "concurrent writers kept taking the same identities or ids; nothing of "
                    "this write was stored, send it again"
                ) from exc
            log.warning("ingest batch conflicted with a concurrent writer; retrying")
            backoff(attempt)
            continue
        for res in outcome.resolutions:
            res.finish(runtime)
        return outcome


def backoff(attempt: int) -> None:
    """Wait before retrying a batch: writers that collided once collide again if they retry in
    step, so they are spread out."""
    time.sleep(random.uniform(0.005, 0.05) * attempt)  # noqa: S311 - jitter only


class RejectsFile:
    """The reject file. It is prepared before anything is read or stored — a path that cannot be
    written, that is not a regular file, or that is the input itself fails the run before its
    first batch.

    Rejects are written to a new file cdp creates beside the target (``O_EXCL | O_NOFOLLOW``,
    mode 0600), which replaces the target (by rename: a link's target is never written) only when
    something was rejected; otherwise that file is removed, and so is a stale reject file of an
    earlier run at the target — a regular file holding cdp's reject lines, nothing else. A
    symbolic link, device, pipe or directory at the target is refused, never followed, written or
    removed."""

    def __init__(self, path: Path, *, source: Path) -> None:
        if _same_file(path, source):
            raise InvalidInputError(
                f"the reject file would overwrite the input {printable_path(source)}; "
                "choose another path",
                field="rejects",
            )
        self.path = path
        self._used = False
        kind = _not_regular(path)
        if kind is not None:
            raise InvalidInputError(
                f"cannot write the reject file {printable_path(path)}: it is {kind}, not a "
                "regular file (cdp neither follows nor replaces it); choose another path",
                field="rejects",
            )
        try:
            fd, temp = tempfile.mkstemp(  # O_CREAT | O_EXCL | O_NOFOLLOW, mode 0600
                prefix=".cdp-rejects-", suffix=".tmp", dir=path.parent
            )
        except OSError as exc:
            raise InvalidInputError(
                f"cannot write the reject file {printable_path(path)}: "
                f"{exc.strerror or type(exc).__name__}",
                field="rejects",
            ) from None
        self._temp = Path(temp)
        self._fh: IO[str] = os.fdopen(fd, "w", encoding="utf-8")

    def write(self, reject: Reject) -> None:
        self._used = True
        row = {
            "line": reject.position,
            "reason": reject.reason,
            "fields": list(reject.fields),
            "message": reject.message,
        }
        self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")

    def close(self) -> None:
        """Put the rejects in place (or remove the file cdp created, and a stale reject file)."""
        self._fh.close()
        if not self._used:
            self._temp.unlink(missing_ok=True)
            if _stale_rejects(self.path):
                self.path.unlink(missing_ok=True)
            return
        try:
            self._temp.replace(self.path)  # replaces a name, never writes through a link
        except OSError as exc:
            raise InvalidInputError(
                f"cannot write the reject file {printable_path(self.path)} "
                f"({exc.strerror or type(exc).__name__}); the rejects are in "
                f"{printable_path(self._temp)}",
                field="rejects",
            ) from None

    @property
    def used(self) -> bool:
        return self._used


_REJECT_KEYS = ("line", "reason", "fields", "message")


def _not_regular(path: Path) -> str | None:
    """What ``path`` is when it exists and is not a regular file (a link is not followed)."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return None
    except OSError:
        return None  # e.g. a parent that is not a directory: creating the file says why
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "a device, pipe or socket"


def _stale_rejects(path: Path) -> bool:
    """Whether ``path`` is a regular file (not a link) that a run of cdp wrote: its first line is
    a reject row (a JSON object with a line number and no key a reject row lacks). Anything else
    at the path is someone else's file, and stays."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return False
        first = fh.readline(4096)
    try:
        row = json.loads(first)
    except ValueError:
        return False
    return (
        isinstance(row, dict)
        and isinstance(row.get("line"), int)
        and set(row).issubset(_REJECT_KEYS)
    )


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (symbolic and hard links included)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.samefile(b)
    except OSError:  # one of them does not exist (yet)
        return False


def _batches(
    raw: Iterable[RawRecord], model: type[BaseModel], context: dict[str, Any], size: int
) -> Iterator[tuple[list[tuple[int, Any]], list[Reject], int]]:
    """(valid items, rejects, records read) per batch of ``size`` valid records."""
    items: list[tuple[int, Any]] = []
    rejects: list[Reject] = []
    read = 0
    validate = model.model_validate
    fast = FAST.get(model)
    damaged: DamagedInputError | None = None
    try:
        for rec in raw:
            read += 1
            if rec.error is not None:
                rejects.append(Reject(rec.line, rec.error, tuple(rec.fields), rec.message))
            else:
                record = fast(rec.data, context) if fast and rec.data is not None else None
                if record is not None:
                    items.append((rec.line, record))
                else:
                    try:
                        items.append((rec.line, validate(rec.data, context=context)))
                    except ValidationError as exc:
                        rejects.append(validation_rejects(rec.line, exc))
            if len(items) >= size:
                yield items, rejects, read
                items, rejects, read = [], [], 0
    except DamagedInputError as exc:
        damaged = exc  # the records read before the damage still make their batch
    if items or rejects or read:
        yield items, rejects, read
    if damaged is not None:
        raise damaged


def _check_targets(mapping: dict[str, str], model: type[BaseModel]) -> None:
    """Every field a mapping names must be one the records have (a customer's other names become
    custom traits, by design); a typo would otherwise reject every row, or store a name as a
    trait."""
    if model is CustomerRecord:
        return
    known = set(model.model_fields) | {
        f.alias for f in model.model_fields.values() if f.alias is not None
    }
    unknown = sorted({t for t in mapping.values() if t and t not in known})
    if unknown:
        raise InvalidInputError(
            f"mapping names unknown field(s) {', '.join(unknown)}; the fields are: "
            + ", ".join(sorted(model.model_fields)),
            field="mapping",
        )


def record_context(runtime: Runtime, converter: Converter, now: datetime) -> dict[str, Any]:
    """The validation context: known currencies, the default phone region and the latest time a
    record may carry (``now`` plus the consent service's clock skew)."""
    return {
        "currencies": converter.currencies,
        "default_region": runtime.settings.default_region,
        "latest_time": now + CLOCK_SKEW,
    }


def file_source(path: Path) -> str:
    """``file:<name>``, the source stored with a file's records (64 characters at most; a name
    that is not UTF-8 or holds unprintable characters has them escaped: see printable_path)."""
    return f"file:{printable_path(path.name)}"[:64]


def converter_for(runtime: Runtime) -> Converter:
    return Converter(runtime.settings.fx_rates, runtime.settings.base_currency)


def ingest_file(
    *,
    runtime: Runtime,
    kind: RecordKind | str,
    path: Path,
    fmt: str | None = None,
    mapping_path: Path | None = None,
    rejects_path: Path | None = None,
    batch_size: int | None = None,
    clock: Clock = utcnow,
    progress: Callable[[int, int], None] | None = None,
) -> Summary:
    """Ingest a CSV / JSON Lines file (plain or gzip) of ``kind`` records; see module doc.

    ``progress(records_read, bytes_read)`` is called after each batch.
    """
    kind = RecordKind(kind)
    settings = runtime.settings
    converter = converter_for(runtime)
    size = batch_size or settings.ingest_batch_size
    mapping = load_mapping(mapping_path)
    _check_targets(mapping, MODELS[kind])
    rejects = RejectsFile(rejects_path or path.with_name(path.name + ".rejects.jsonl"), source=path)
    summary = Summary(kind=kind.value)
    started = time.perf_counter()
    source = file_source(path)
    raw = read_records(path, fmt=fmt, mapping=mapping, limit=settings.ingest_max_record_bytes)
    batches = _batches(raw, MODELS[kind], record_context(runtime, converter, clock()), size)
    damaged: DamagedInputError | None = None
    try:
        with collector_paused():
            try:
                for items, bad, read in batches:
                    outcome = run_batch(
                        runtime,
                        WRITERS[kind],
                        items,
                        source=source,
                        converter=converter,
                        clock=clock,
                        recorded_by=source,
                    )
                    outcome.rejects.extend(bad)
                    outcome.rejects.sort(key=lambda r: r.position)
                    for reject in outcome.rejects:
                        rejects.write(reject)
                        summary.reasons[reject.reason] = summary.reasons.get(reject.reason, 0) + 1
                    summary.read += read
                    summary.inserted += outcome.inserted
                    summary.updated += outcome.updated
                    summary.duplicates += outcome.duplicates
                    summary.rejected += len(outcome.rejects)
                    summary.merges += outcome.merges
                    summary.subjects_created += outcome.subjects_created
                    count_ingest(
                        channel="file",
                        kind=kind.value,
                        accepted=outcome.inserted + outcome.updated,
                        rejected=len(outcome.rejects),
                        duplicates=outcome.duplicates,
                    )
                    if progress is not None:
                        progress(summary.read, 0)
                    # The batch's cyclic garbage, if any (cdp.ingest.collector); the batch
                    # itself is released first (the generator still refers to its lists), so
                    # the collection walks only what outlives it.
                    items.clear()
                    bad.clear()
                    del outcome
                    gc.collect(1)  # the young generations, not the data keys cached by the run
            except DamagedInputError as exc:
                damaged = exc  # raised after the batch of the records read before it
    finally:
        rejects.close()
        summary.seconds = time.perf_counter() - started
    summary.rejects_path = rejects.path if rejects.used else None
    log.info("ingest finished", **{k: v for k, v in summary.as_dict().items() if k != "reasons"})
    if damaged is not None:
        if not damaged.line:
            raise IncompleteFileError(f"{damaged}; nothing was ingested", summary=summary)
        raise IncompleteFileError(
            f"{damaged}: every record read through line {damaged.line} was ingested (stored, a "
            "duplicate or rejected; see the summary), nothing after it; ingest the complete "
            "file again to add the rest (what is stored counts as duplicates)",
            summary=summary,
        )
    return summary
