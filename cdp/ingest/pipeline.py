"""The batch connector: stream a file, validate, and write it batch by batch.

Each batch (``settings.ingest_batch_size`` records, 5,000 by default) is one transaction: tokens,
resolution, new subjects with their identities and PII, orders, events, consent — all or nothing.
A gzip file is checked whole (CRC and length) before its first record is read, so a damaged one
stores nothing (:mod:`cdp.ingest.gzip_check`). A crash (even SIGKILL) loses at most the batch in
flight; running the same file again skips what was stored (order ids, message ids, consent dedupe
keys, identity tokens, unchanged PII), so it creates no duplicates. Data keys are created just
before their batch's transaction; a key whose batch never committed protects nothing and is
harmless.

Rejected records go to a JSON Lines file next to the input (``<input>.rejects.jsonl``): line
number, reason code, field names and a message — never the rejected values
(:mod:`cdp.ingest.rejects_file`). Only a run that reads a record replaces (or, rejecting
nothing, removes) the previous run's reject file; a run refused before its first record (the CSV
header, a damaged gzip) or a file without records leaves it as it was. Each batch is committed
by :mod:`cdp.ingest.batch_commit`.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ValidationError

from cdp.clock import Clock, utcnow
from cdp.consent.service import CLOCK_SKEW
from cdp.errors import InvalidInputError
from cdp.ingest.batch import Reject
from cdp.ingest.batch_commit import Writer, converter_for, run_batch
from cdp.ingest.collector import collector_paused
from cdp.ingest.consents import write_consents
from cdp.ingest.customer_record import CustomerRecord
from cdp.ingest.customers import write_customers
from cdp.ingest.events import write_events
from cdp.ingest.fast_customer import fast_customer
from cdp.ingest.fastpath import fast_order
from cdp.ingest.gzip_check import verify_gzip
from cdp.ingest.money import Converter
from cdp.ingest.orders import write_orders
from cdp.ingest.readers import (
    DamagedInputError,
    RawRecord,
    is_gzip,
    load_mapping,
    printable_path,
    read_records,
)
from cdp.ingest.records import ConsentRecord, EventRecord, OrderRecord
from cdp.ingest.rejects_file import RejectsFile
from cdp.logging import get_logger
from cdp.observability import count_ingest
from cdp.runtime import Runtime
from cdp.validation import safe_location

log = get_logger("cdp.ingest")


class RecordKind(StrEnum):
    CUSTOMERS = "customers"
    ORDERS = "orders"
    CONSENTS = "consents"
    EVENTS = "events"


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
    erased_named: int = 0
    """Consent records that named an erased identity and whose withdrawal was recorded for the
    live subjects their other identities name (not rejects: their ledger entries are counted in
    ``inserted``, or ``duplicates``)."""
    expired: int = 0
    """Valid new records past every retention window of their kind when they arrived
    (:func:`cdp.privacy.registry.longest_retention`): events not stored, orders stored without
    their personal link. Neither ``inserted`` nor ``rejected`` (not in the reject file)."""
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
            "erased_named": self.erased_named,
            "expired": self.expired,
            "seconds": round(self.seconds, 3),
            "rejects_file": printable_path(self.rejects_path) if self.rejects_path else None,
            "reasons": dict(sorted(self.reasons.items())),
        }


class IncompleteFileError(InvalidInputError):
    """The input file ended early: a gzip file that passed its check before the run
    (:mod:`cdp.ingest.gzip_check`) and was damaged or cut while it was read (written in place
    meanwhile). Every record read before the damage was ingested — stored, a duplicate or
    rejected —; ``summary`` says what was done."""

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


def record_fields(model: type[BaseModel]) -> frozenset[str] | None:
    """The names a record's input may carry (fields and their aliases); None for customers, whose
    other names become custom traits, by design."""
    if model is CustomerRecord:
        return None
    return frozenset(model.model_fields) | {
        f.alias for f in model.model_fields.values() if f.alias is not None
    }


def _check_targets(mapping: dict[str, str], model: type[BaseModel]) -> None:
    """Every field a mapping names must be one the records have (a customer's other names become
    custom traits, by design); a typo would otherwise reject every row, or store a name as a
    trait."""
    known = record_fields(model)
    if known is None:
        return
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


def checked_input(path: Path) -> IO[bytes]:
    """``path`` open for reading, a gzip file checked whole first (:mod:`cdp.ingest.gzip_check`:
    :class:`~cdp.ingest.gzip_check.DamagedGzipError` when it is not, before anything is read).
    The run reads the file it checked through this one handle."""
    handle = path.open("rb")
    try:
        if is_gzip(path):
            verify_gzip(handle, path)
    except BaseException:
        handle.close()
        raise
    return handle


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
    try:
        handle = checked_input(path)
    except BaseException:
        rejects.discard()  # nothing was read: the reject file's path is left as it was
        raise
    raw = read_records(
        path,
        fmt=fmt,
        mapping=mapping,
        limit=settings.ingest_max_record_bytes,
        handle=handle,
        fields=record_fields(MODELS[kind]),
    )
    batches = _batches(raw, MODELS[kind], record_context(runtime, converter, clock()), size)
    damaged: DamagedInputError | None = None
    began = False  # a record was read: the run replaces (or removes) the previous reject file
    try:
        with handle, collector_paused():
            try:
                for items, bad, read in batches:
                    began = True
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
                    summary.erased_named += outcome.erased_named
                    summary.expired += outcome.expired
                    count_ingest(
                        channel="file",
                        kind=kind.value,
                        accepted=outcome.inserted + outcome.updated,
                        rejected=len(outcome.rejects),
                        duplicates=outcome.duplicates,
                        expired=outcome.expired,
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
        if began:
            rejects.close()
        else:
            # refused before its first record (the CSV header, a file changed after its gzip
            # check), or a file without records: the previous run's rejects still describe it
            rejects.discard()
        summary.seconds = time.perf_counter() - started
    summary.rejects_path = rejects.path if rejects.used else None
    log.info("ingest finished", **{k: v for k, v in summary.as_dict().items() if k != "reasons"})
    if damaged is not None:  # it passed its check before the run: it changed while read
        if not damaged.line:
            raise IncompleteFileError(
                f"{damaged}, it changed after its gzip check; nothing was ingested",
                summary=summary,
            )
        raise IncompleteFileError(
            f"{damaged}, it changed after its gzip check (still being written?): every record "
            f"read through line {damaged.line} was ingested (stored, a duplicate or rejected; "
            "see the summary), nothing after it; ingest the complete file again to add the "
            "rest (what is stored counts as duplicates)",
            summary=summary,
        )
    return summary
