"""The whole-file check of a gzip input, before its first record is read.

gzip keeps a file's CRC-32 and length at its end, so a reader learns that a block was damaged only
after it has handed out what the block decoded to: a flipped byte in a stored block, or in a
deflate block that still decodes, comes out as wrong rows, which the batch connector stored batch
by batch until the check at the end failed. :func:`verify_gzip` therefore decompresses the whole
file to nowhere first (in chunks of :data:`CHUNK`: memory stays flat whatever the file's size),
checking every member's CRC and length as :mod:`gzip` reads them, and the run starts only when
the file is whole. The cost is one more decompression (see docs/ingestion.md for a measure).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import IO

from cdp.errors import InvalidInputError
from cdp.ingest.readers import printable_path

CHUNK = 1 << 20
"""Bytes of decompressed data read at a time (and the check's whole buffer)."""


class DamagedGzipError(InvalidInputError):
    """A ``.gz`` input failed its check before anything was read from it: nothing was ingested.
    The message names the file and what is wrong, never its content."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="file")


def _why(exc: Exception) -> str:
    """What is wrong, from the error gzip or zlib raised (their text may quote the file's first
    bytes: never passed on)."""
    if isinstance(exc, EOFError):
        return "is cut short: its gzip data ends before its end-of-stream marker"
    text = str(exc)
    if isinstance(exc, gzip.BadGzipFile) and text.startswith("CRC check failed"):
        return "is damaged: its data fails the gzip CRC check"
    if isinstance(exc, gzip.BadGzipFile) and text.startswith("Incorrect length"):
        return "is damaged: its data fails the gzip length check"
    if isinstance(exc, zlib.error):
        return "is damaged: its compressed data cannot be decoded"
    return "is not a gzip file (or holds something else after its gzip data)"


def verify_gzip(handle: IO[bytes], path: Path) -> None:
    """Read the gzip file open in ``handle`` to its end, checking every member's CRC and
    length; :class:`DamagedGzipError` when it is not whole. ``handle`` is left at its start
    either way (the run reads the same open file: a file renamed over ``path`` meanwhile is not
    the one read)."""
    handle.seek(0)
    try:
        with gzip.GzipFile(fileobj=handle, mode="rb") as stream:  # does not close ``handle``
            read = stream.read
            while read(CHUNK):
                pass
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        why = _why(exc)
    else:
        return
    finally:
        handle.seek(0)
    raise DamagedGzipError(
        f"{printable_path(path.name)} {why}; nothing was ingested (check the file, or compress "
        "or copy it again)"
    )
