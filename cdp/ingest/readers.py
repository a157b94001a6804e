"""Streaming readers for CSV and JSON Lines (optionally gzip), with a column mapping.

Files are read line by line in binary with a hard bound per line, so a 10 MB field or a file
without line breaks cannot blow memory up: an oversize line is skipped to its end and reported.
Each line is decoded as strict UTF-8 on its own; a line that is not valid UTF-8 is reported and
the reader carries on. CSV records are split and parsed by :mod:`cdp.ingest.csv_records` (a quoted
field may span lines; each record is parsed or rejected on its own, reported by its first line).

A reader yields :class:`RawRecord` items: either ``data`` (a dict of field -> value, after the
column mapping) or an ``error`` (reason code + message, never the content).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import tomllib
import zlib
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, cast

from cdp.errors import InvalidInputError
from cdp.ingest.csv_header import CsvHeader
from cdp.ingest.csv_records import csv_rows
from cdp.jsonio import MAX_DEPTH, NOT_STRICT, strict_loads, too_deep

Format = Literal["csv", "jsonl"]

_BOM = b"\xef\xbb\xbf"

_EXTENSIONS: Mapping[str, Format] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


@dataclass(slots=True)
class RawRecord:
    """One record as read: its first line number and either the data or why it is unusable."""

    line: int
    data: dict[str, Any] | None = None
    error: str | None = None
    message: str = ""
    fields: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"RawRecord(line={self.line}, error={self.error!r})"


class DamagedInputError(InvalidInputError):
    """The input's data ends early: a gzip file that is damaged or cut short. ``line`` is the
    last line read (0: none); every record before the damage has been yielded."""

    def __init__(self, message: str, *, line: int) -> None:
        super().__init__(message, field="file")
        self.line = line


def printable_path(path: Path | str) -> str:
    """``path`` as text any output can hold: bytes of a name that are not UTF-8 (lone surrogates
    in Python's str, which no UTF-8 stream or database text accepts) as ``\\xNN``, other
    unprintable characters (a line break in a name) as their escapes."""
    text = os.fspath(path)
    with contextlib.suppress(UnicodeEncodeError):  # else not from the file system: see below
        text = os.fsencode(text).decode("utf-8", "backslashreplace")
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def detect_format(path: Path, override: str | None = None) -> Format:
    """The format from ``--format`` or the extension (``.gz`` is looked through)."""
    if override:
        if override not in ("csv", "jsonl"):
            raise InvalidInputError("format must be csv or jsonl", field="format")
        return override  # type: ignore[return-value]
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = _EXTENSIONS.get(suffixes[-1] if suffixes else "")
    if fmt is None:
        raise InvalidInputError(
            "cannot tell the format from the file name; pass --format csv|jsonl", field="format"
        )
    return fmt


def is_gzip(path: Path) -> bool:
    """Whether ``path`` is read as gzip (its name ends in ``.gz``, any case)."""
    return path.suffix.lower() == ".gz"


MAX_MAPPING_BYTES = 1024 * 1024
"""The largest column mapping file read (a mapping names columns: a few KiB)."""


def load_mapping(path: Path | None) -> dict[str, str]:
    """A column mapping file: ``{"columns": {"Source Column": "our_field", ...}}`` (JSON/TOML).

    A source column mapped to ``""`` is dropped; columns not named pass through unchanged.
    """
    if path is None:
        return {}
    try:
        with path.open("rb") as handle:
            text = handle.read(MAX_MAPPING_BYTES + 1)  # bounded: /dev/zero would never end
    except OSError as exc:
        raise InvalidInputError(
            f"the mapping file cannot be read ({exc.strerror or type(exc).__name__})",
            field="mapping",
        ) from None
    if len(text) > MAX_MAPPING_BYTES:
        raise InvalidInputError(
            f"the mapping file is larger than {MAX_MAPPING_BYTES // 1024} KiB", field="mapping"
        )
    try:
        raw = tomllib.loads(text.decode()) if path.suffix.lower() == ".toml" else json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInputError("mapping file is not valid JSON/TOML", field="mapping") from exc
    columns = raw.get("columns", raw) if isinstance(raw, dict) else None
    if not isinstance(columns, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in columns.items()
    ):
        raise InvalidInputError(
            "mapping must be an object of source column -> field name", field="mapping"
        )
    targets = [v for v in columns.values() if v]
    twice = sorted({v for v in targets if targets.count(v) > 1})
    if twice:  # one value would silently overwrite the other
        raise InvalidInputError(
            f"mapping sends several columns to {', '.join(twice)}; map one, drop the others "
            'with ""',
            field="mapping",
        )
    return dict(columns)


def _lines(stream: IO[bytes], limit: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes without the line end); ``None`` past ``limit``. A UTF-8 byte order
    mark opening the file is not part of its first line."""
    number = 0
    while True:
        chunk = stream.readline(limit + 1)
        if not chunk:
            return
        number += 1
        if len(chunk) > limit and not chunk.endswith(b"\n"):
            while chunk and not chunk.endswith(b"\n"):  # skip the rest of the line, bounded
                chunk = stream.readline(1 << 16)
            yield number, None
            continue
        if number == 1 and chunk.startswith(_BOM):
            chunk = chunk[len(_BOM) :]
        yield number, chunk.rstrip(b"\r\n")


def _remap(row: dict[str, Any], mapping: Mapping[str, str]) -> tuple[dict[str, Any], str | None]:
    """``row`` with its keys mapped, and the first field two of its keys both map to (None when
    none do: then nothing was overwritten)."""
    if not mapping:
        return row, None
    out: dict[str, Any] = {}
    clash: str | None = None
    for key, value in row.items():
        target = mapping.get(key, key)
        if target:
            if clash is None and target in out:
                clash = target
            out[target] = value
    return out, clash


def read_jsonl(stream: IO[bytes], *, mapping: Mapping[str, str], limit: int) -> Iterator[RawRecord]:
    loads = json.loads
    for number, raw in _lines(stream, limit):
        if raw is None:
            yield RawRecord(number, error="record_too_large", message=f"over {limit} bytes")
            continue
        if not raw.strip():
            continue
        data = strict_loads(raw)  # orjson: ~3x faster than json, UTF-8 checked in the same pass
        if data is NOT_STRICT:
            # Not strict JSON (or not UTF-8): decide exactly as the json module would, which
            # also reads NaN, Infinity, huge integers and lone surrogate escapes.
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield RawRecord(number, error="invalid_utf8", message="line is not valid UTF-8")
                continue
            try:
                data = loads(text)
            except (ValueError, RecursionError):
                yield RawRecord(number, error="invalid_json", message="line is not a JSON object")
                continue
        if not isinstance(data, dict):
            yield RawRecord(number, error="invalid_json", message="line is not a JSON object")
            continue
        if too_deep(raw, data):
            yield RawRecord(
                number, error="invalid_json", message=f"nested more than {MAX_DEPTH} levels deep"
            )
            continue
        data, clash = _remap(data, mapping)
        if clash is not None:
            yield RawRecord(
                number,
                error="invalid",
                fields=[clash],
                message=f"{clash}: two keys of the record become this field after the column "
                "mapping (one would overwrite the other)",
            )
            continue
        yield RawRecord(number, data=data)


def read_csv(
    stream: IO[bytes],
    *,
    mapping: Mapping[str, str],
    limit: int,
    delimiter: str = ",",
    fields: Collection[str] | None = None,
) -> Iterator[RawRecord]:
    """CSV with a header row; values are strings, empty cells are treated as absent. Each
    record is parsed (or rejected) on its own: see :mod:`cdp.ingest.csv_records`. The header is
    settled first (:mod:`cdp.ingest.csv_header`: blank columns, a column naming none of
    ``fields`` when given)."""
    header: CsvHeader | None = None
    for number, row, reason, message in csv_rows(stream, limit=limit, delimiter=delimiter):
        if row is None:
            if header is None:
                raise InvalidInputError(
                    f"the header row (line {number}) cannot be read: {message}", field="header"
                )
            yield RawRecord(number, error=reason, message=message)
            continue
        if header is None:
            header = CsvHeader.read(row, mapping, fields)
            continue
        data, why = header.record(row)
        if data is None:
            yield RawRecord(number, error="invalid_csv", message=why)
            continue
        yield RawRecord(number, data=data)


def read_records(
    path: Path,
    *,
    fmt: str | None = None,
    mapping: Mapping[str, str] | None = None,
    limit: int = 1_048_576,
    handle: IO[bytes] | None = None,
    fields: Collection[str] | None = None,
) -> Iterator[RawRecord]:
    """Stream the records of ``path`` (CSV or JSON Lines, plain or gzip), from ``handle`` (the
    file open at its start, left open) when given. ``fields``: the names a CSV header's columns
    may carry (None: any; see :mod:`cdp.ingest.csv_header`).

    A gzip file that is not gzip, or is damaged or cut short, raises :class:`DamagedInputError`
    where its data ends (the records before it have been yielded): the batch connector checks a
    gzip file whole first (:mod:`cdp.ingest.gzip_check`), so there this means the file changed
    after its check."""
    kind = detect_format(path, fmt)
    delimiter = "\t" if ".tsv" in [s.lower() for s in path.suffixes] else ","
    line = 0
    with contextlib.ExitStack() as closing:
        if handle is None:
            handle = closing.enter_context(path.open("rb"))
        stream = handle
        if is_gzip(path):  # streams; closing it leaves ``handle`` open
            unpacked = gzip.GzipFile(fileobj=handle, mode="rb")
            stream = closing.enter_context(cast(IO[bytes], unpacked))
        if kind == "csv":
            records = read_csv(
                stream, mapping=mapping or {}, limit=limit, delimiter=delimiter, fields=fields
            )
        else:
            records = read_jsonl(stream, mapping=mapping or {}, limit=limit)
        try:
            for record in records:
                line = record.line
                yield record
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            where = f"after line {line}" if line else "before its first record"
            raise DamagedInputError(
                f"{printable_path(path.name)} is not a complete gzip file "
                f"({type(exc).__name__} {where})",
                line=line,
            ) from None
