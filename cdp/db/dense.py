"""Reading the rows of many ids as one range of the primary key, when most of the range is wanted.

Exports read a chunk's data keys and sealed records by subject id. When the chunk is dense (most
stored ids between its smallest and its largest id are in it), one range read of the primary key
is cheaper than a lookup per id. :func:`read_dense` does that read and falls back to lookups for
what it did not yield: ids without a row, or ordered otherwise by the database's collation. A
range holding at least twice as many rows as ids is abandoned for the lookups.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

Row = TypeVar("Row", bound=tuple[Any, ...])
"""A row: a tuple whose first item is its id."""


def read_dense(
    ids: Sequence[str],
    read_range: Callable[[str, str, int], list[Row]],
    read_ids: Callable[[list[str]], list[Row]],
) -> list[Row]:
    """The rows of ``ids`` (distinct): ``read_range(first, last, limit)`` reads at most
    ``limit`` rows whose id lies between ``first`` and ``last``; ``read_ids`` looks ids up."""
    wanted_ids = list(ids)
    if len(wanted_ids) < 2:
        return read_ids(wanted_ids) if wanted_ids else []
    limit = 2 * len(wanted_ids)
    ranged = read_range(min(wanted_ids), max(wanted_ids), limit)
    if len(ranged) >= limit:
        return read_ids(wanted_ids)
    wanted = set(wanted_ids)
    rows = [r for r in ranged if r[0] in wanted]
    if len(rows) == len(wanted_ids):
        return rows
    wanted.difference_update(r[0] for r in rows)
    return rows + read_ids([s for s in wanted_ids if s in wanted])
