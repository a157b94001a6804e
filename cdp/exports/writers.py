"""Output files: CSV (plain files and the Meta and Google customer-list files) and JSON Lines.

A file is written to a temporary name beside its final one (mode 0600: it holds personal data)
and hashed (SHA-256) as it is written; :meth:`FileSink.commit` renames it into place and
:meth:`FileSink.abort` removes it, so a failed or refused export leaves no partial file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path
from typing import IO, Protocol


class RowSink(Protocol):
    """Where rows go: a file, or a webhook's batches."""

    def write(self, subject_ids: list[str], rows: list[list[str]]) -> None: ...


class FileSink:
    """A CSV or JSON Lines file with a header (CSV) and a running SHA-256."""

    def __init__(
        self, path: Path, headers: tuple[str, ...], *, fmt: str, digests_only: bool = False
    ) -> None:
        """``digests_only``: every cell is a hex digest or empty (the ad-platform files whose
        columns are all hashed), so CSV lines are plain joins without a quoting check."""
        if fmt not in ("csv", "jsonl"):
            raise ValueError("file format must be csv or jsonl")
        self.path = path
        self.headers = headers
        self.fmt = fmt
        self._joined = digests_only and fmt == "csv" and len(headers) > 1
        self.rows = 0
        self._tmp = path.with_name(path.name + ".part")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
        self._file: IO[bytes] = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        if fmt == "csv":
            self._emit(self._csv([list(headers)]))

    def __repr__(self) -> str:
        return f"FileSink(path={self.path!s}, rows={self.rows})"

    @staticmethod
    def _csv(rows: list[list[str]]) -> bytes:
        """``rows`` as ``csv.writer`` writes them (``\\n`` line ends, minimal quoting)."""
        fast = _plain_csv(rows)
        if fast is not None:
            return fast
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        return buf.getvalue().encode()

    def _jsonl(self, rows: list[list[str]]) -> bytes:
        headers = self.headers
        dumps = json.dumps
        lines = [
            dumps({h: v for h, v in zip(headers, r, strict=True) if v}, ensure_ascii=False)
            for r in rows
        ]
        return ("\n".join(lines) + "\n").encode() if lines else b""

    def _emit(self, data: bytes) -> None:
        self._hash.update(data)
        self._file.write(data)

    def write(self, subject_ids: list[str], rows: list[list[str]]) -> None:
        """Append ``rows`` (``subject_ids`` are not written: files carry no cdp ids)."""
        if rows:
            if self._joined:  # no cell can hold a separator, quote or line end
                data = ("\n".join([",".join(r) for r in rows]) + "\n").encode()
            else:
                data = self._csv(rows) if self.fmt == "csv" else self._jsonl(rows)
            self._emit(data)
            self.rows += len(rows)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def commit(self) -> None:
        """Flush, fsync and move the file into place."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._tmp.replace(self.path)

    def abort(self) -> None:
        """Close and remove the partial file."""
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)
        self.path.unlink(missing_ok=True)


def _plain_csv(rows: list[list[str]]) -> bytes | None:
    """The CSV text of ``rows`` by plain joins when no cell needs quoting (no ``,``, ``"``,
    ``\\r`` or ``\\n`` in any cell: hex digests always qualify), else None. Checked on the
    joined text: every row must add exactly its own separators and line end. A row of one
    empty cell needs quoting (``csv.writer`` writes ``""``), so it is left to the writer too."""
    if not rows:
        return b""
    text = "\n".join([",".join(r) for r in rows]) + "\n"
    commas = sum(len(r) for r in rows) - len(rows)
    if (
        '"' in text
        or "\r" in text
        or text.count("\n") != len(rows)
        or text.count(",") != commas
        or any(len(r) == 1 and not r[0] for r in rows)
    ):
        return None
    return text.encode()


def write_json_file(path: Path, document: object) -> None:
    """Write ``document`` as indented JSON, atomically (temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    data = json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"
    fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
