"""Rendering columns of records straight into bytes with numpy.

Formatting millions of timestamps, ids and amounts one Python call at a time would dominate the
cost of writing a large shop. Instead every record is a row of a ``uint8`` matrix: each field is
a block of columns (digits computed with integer arithmetic, or rows gathered from a table of
pre-rendered snippets), blocks are placed side by side, and shorter values are padded with a
filler byte that is deleted when the matrix is turned into bytes. All output is ASCII.

A block is a constant string, a matrix with one row per record, or ``(table, index)``: the
table rows to gather for each record. A `Canvas` reuses one buffer from chunk to chunk, so that
large matrices are not allocated (and page-faulted in) again for every chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np
from numpy.typing import NDArray

U8 = NDArray[np.uint8]
I64 = NDArray[np.int64]
FILL = 1
_ZERO = ord("0")
_DAY = 86_400

Block = Union[str, "U8", tuple["U8", "I64"], list["Block"]]


def _flat(blocks: Sequence[Block]) -> list[Block]:
    out: list[Block] = []
    for b in blocks:
        if isinstance(b, list):
            out.extend(_flat(b))
        else:
            out.append(b)
    return out


def _block_width(block: Block) -> int:
    if isinstance(block, str):
        return len(block)
    if isinstance(block, tuple):
        return int(block[0].shape[1])
    assert not isinstance(block, list)
    return int(block.shape[1])


def width(blocks: Sequence[Block]) -> int:
    """Columns taken by `blocks` side by side."""
    return sum(_block_width(b) for b in _flat(blocks))


def fill(view: U8, blocks: Sequence[Block], rows: I64 | None = None) -> None:
    """Write `blocks` side by side into `view` (or into its `rows`), filler after them."""
    col = 0
    target = slice(None) if rows is None else rows
    for block in _flat(blocks):
        w = _block_width(block)
        if isinstance(block, str):
            view[target, col : col + w] = np.frombuffer(block.encode("ascii"), dtype=np.uint8)
        elif isinstance(block, tuple):
            view[target, col : col + w] = block[0][block[1]]
        else:
            assert not isinstance(block, list)
            view[target, col : col + w] = block
        col += w
    if col < view.shape[1]:
        view[target, col:] = FILL


class Canvas:
    """A reusable byte matrix for rendering one chunk of records at a time."""

    def __init__(self) -> None:
        self._buffer = np.empty(0, dtype=np.uint8)

    def matrix(self, rows: int, columns: int) -> U8:
        """An uninitialised `rows` x `columns` view of the buffer (grown when needed)."""
        size = rows * columns
        if self._buffer.size < size:
            self._buffer = np.empty(size + size // 4, dtype=np.uint8)
        view: U8 = self._buffer[:size].reshape(rows, columns)
        return view

    def render(self, rows: int, blocks: Sequence[Block]) -> bytes:
        """Records made of `blocks`, one per row, as bytes."""
        if rows == 0:
            return b""
        view = self.matrix(rows, width(blocks))
        fill(view, blocks)
        return to_bytes(view)


def table(snippets: Sequence[str]) -> U8:
    """ASCII snippets as the rows of a matrix, right-padded with the filler."""
    width = max((len(s) for s in snippets), default=0)
    raw = np.array([s.encode("ascii") for s in snippets], dtype=f"S{max(width, 1)}")
    matrix = raw.view(np.uint8).reshape(len(snippets), max(width, 1)).copy()
    matrix[matrix == 0] = FILL
    return matrix


def digits(values: I64, places: int) -> U8:
    """Non-negative integers zero-padded to `places` digits."""
    matrix = np.empty((len(values), places), dtype=np.uint8)
    v = values.copy()
    for k in range(places - 1, -1, -1):
        v, digit = np.divmod(v, 10)
        matrix[:, k] = (digit + _ZERO).astype(np.uint8)
    return matrix


def civil(days: I64) -> tuple[I64, I64, I64]:
    """Days since 1970-01-01 -> (year, month, day), proleptic Gregorian (H. Hinnant)."""
    z = days + 719_468
    era = np.floor_divide(z, 146_097)
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    return year, month, day


def _date_rows(days: I64) -> U8:
    year, month, day = civil(days)
    return join([digits(year, 4), "-", digits(month, 2), "-", digits(day, 2)], len(days))


_HMS: U8 | None = None


def _hms() -> U8:
    """``HH:MM:SSZ`` for every second of a day."""
    global _HMS
    if _HMS is None:
        s = np.arange(_DAY, dtype=np.int64)
        _HMS = join(
            [digits(s // 3600, 2), ":", digits(s // 60 % 60, 2), ":", digits(s % 60, 2), "Z"], _DAY
        )
    return _HMS


def dates(days: I64) -> Block:
    """Days since the epoch as ``YYYY-MM-DD`` (10 columns)."""
    if len(days) == 0:
        return np.empty((0, 10), dtype=np.uint8)
    low = int(days.min())
    return (_date_rows(np.arange(low, int(days.max()) + 1, dtype=np.int64)), days - low)


def timestamps(seconds: I64) -> Block:
    """Epoch seconds as ISO 8601 UTC, ``2025-03-04T10:11:12Z`` (20 columns)."""
    day, second = np.divmod(seconds, _DAY)
    return [dates(day), "T", (_hms(), second)]


def amounts(minor: I64, decimals: I64) -> U8:
    """Minor units as decimals: two places where `decimals` is 2 (``59.90``), else whole."""
    n = len(minor)
    two = decimals == 2
    whole = np.where(two, minor // 100, minor)
    width = len(str(int(whole.max()))) if n else 1
    matrix = np.full((n, width + 3), FILL, dtype=np.uint8)
    cents = minor % 100
    matrix[two, width] = ord(".")
    matrix[two, width + 1] = (cents[two] // 10 + _ZERO).astype(np.uint8)
    matrix[two, width + 2] = (cents[two] % 10 + _ZERO).astype(np.uint8)
    # The whole part is right-aligned in the first `width` columns; leading zeros stay filler.
    v = whole.copy()
    for k in range(width - 1, -1, -1):
        v, digit = np.divmod(v, 10)
        show = (whole >= 10 ** (width - 1 - k)) | (k == width - 1)
        matrix[show, k] = (digit[show] + _ZERO).astype(np.uint8)
    return matrix


def strings(values: Sequence[str]) -> U8:
    """Arbitrary ASCII strings, one per row (filler-padded)."""
    return table(values) if len(values) else np.empty((0, 1), dtype=np.uint8)


def join(blocks: Sequence[Block], rows: int) -> U8:
    """A new matrix of `rows` records made of `blocks` (for small, one-off renders)."""
    view = np.empty((rows, width(blocks)), dtype=np.uint8)
    fill(view, blocks)
    return view


def lines(blocks: Sequence[Block], rows: int) -> list[str]:
    """Records made of `blocks` as a list of strings."""
    if rows == 0:
        return []
    return to_bytes(join([*blocks, "\n"], rows)).decode("ascii").split("\n")[:-1]


def to_bytes(matrix: U8) -> bytes:
    """The rows one after another, with the filler removed."""
    return np.ascontiguousarray(matrix).tobytes().translate(None, b"\x01")


def pad(matrix: U8, columns: int) -> U8:
    """Right-pad rows with filler to `columns` columns."""
    if matrix.shape[1] >= columns:
        return matrix
    extra = np.full((matrix.shape[0], columns - matrix.shape[1]), FILL, dtype=np.uint8)
    return np.hstack([matrix, extra])


def stack(matrices: Sequence[U8]) -> U8:
    """Matrices one below the other, padded to the widest."""
    columns = max(m.shape[1] for m in matrices)
    return np.vstack([pad(m, columns) for m in matrices])
