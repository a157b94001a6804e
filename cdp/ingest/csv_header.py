"""A CSV file's header row, settled once before its first record: the names its columns carry
after the column mapping, which columns are read, and which are refused.

- A column whose header cell is blank (a trailing comma: ``order_id,...,currency,``) carries no
  field: it is ignored while its cells are empty (or blank), and a record with a value there is
  rejected naming the column's position (``invalid_csv``): a value without a name cannot be
  stored, and guessing one would put it in the wrong place.
- A column the mapping drops (``""``) is ignored whatever it holds.
- With ``fields`` given (every record kind but customers, whose other columns are custom traits),
  a column whose name is none of them stops the run before the first record is read, naming its
  position, instead of rejecting every record one by one. A header cell is never repeated in an
  error: a file without a header row has its first record read as one.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from cdp.errors import InvalidInputError

_SHOWN = 10
"""Column positions named in an error at most."""


def mapped_header(header: list[str], mapping: Mapping[str, str]) -> list[str]:
    """The CSV header's names after the mapping (``""`` for a dropped or blank column); two
    columns that would carry one name — two mapped to one field, or a mapped column and an
    unmapped column of the target's name — are refused: one would silently overwrite the
    other."""
    names = [mapping.get(h, h) for h in header]
    kept = [n for n in names if n]
    twice = sorted({n for n in kept if kept.count(n) > 1})
    if twice:
        raise InvalidInputError(
            f"after the column mapping, several columns of the header are named "
            f"{', '.join(twice)} (one would overwrite the other); map one of them to another "
            'field or drop it with ""',
            field="mapping",
        )
    return names


def _positions(columns: list[int]) -> str:
    shown = ", ".join(str(c) for c in columns[:_SHOWN])
    more = len(columns) - _SHOWN
    return shown + (f" (and {more} more)" if more > 0 else "")


@dataclass(frozen=True, slots=True)
class CsvHeader:
    names: tuple[str, ...]
    """Each column's field name after the mapping; ``""``: the column is not read."""
    blank: tuple[int, ...]
    """Columns (0-based) with no name in the header nor from the mapping."""
    every_column: bool
    """Every column carries a field: a record is ``dict(zip(names, cells))``."""

    @classmethod
    def read(
        cls, row: list[str], mapping: Mapping[str, str], fields: Collection[str] | None
    ) -> CsvHeader:
        """The header of ``row`` (the file's first record); :class:`InvalidInputError` when a
        name repeats, or (``fields`` given) a column names none of ``fields``."""
        header = [h.strip().lstrip("\ufeff") for h in row]
        named = [h for h in header if h]
        if len(set(named)) != len(named):
            raise InvalidInputError("CSV header repeats a column name", field="header")
        names = mapped_header(header, mapping)
        if fields is not None:
            unknown = [i + 1 for i, n in enumerate(names) if n and n not in fields]
            if unknown:
                raise InvalidInputError(
                    f"the CSV header's column{'s' if len(unknown) > 1 else ''} "
                    f"{_positions(unknown)} name{'' if len(unknown) > 1 else 's'} no field of "
                    f"these records (the fields are: {', '.join(sorted(fields))}); map such a "
                    'column to a field or drop it with "" (--mapping), and check that the '
                    "file's first line is its header (a header cell is not repeated here: it "
                    "may be data); nothing was ingested",
                    field="header",
                )
        blank = tuple(i for i, (h, n) in enumerate(zip(header, names, strict=True)) if not (h or n))
        return cls(tuple(names), blank, "" not in names)

    def record(self, cells: list[str]) -> tuple[dict[str, Any] | None, str]:
        """The record of a row of ``cells`` (as many as the header's), or None and why not."""
        names = self.names
        if self.every_column:
            return dict(zip(names, cells, strict=True)), ""
        for i in self.blank:
            cell = cells[i]
            if cell and not cell.isspace():
                return None, f"a value in column {i + 1}, which has no name in the header"
        return {n: c for n, c in zip(names, cells, strict=True) if n}, ""
