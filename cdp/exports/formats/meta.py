"""Meta (Facebook, Instagram) customer-file custom audiences.

Columns are the Marketing API multi-key schema keys (``EMAIL``, ``PHONE``, ``FN``, ...) in
lower case, which is also how the customer-list file names them. Every cell is the SHA-256
hex digest of the value normalised by Meta's rules (see ``docs/audience-formats.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from types import MappingProxyType

from cdp.exports.formats.base import (
    CellMemo,
    Column,
    Profile,
    RowFunction,
    RowMixin,
    column_cells,
    columns_function,
    hashed_cell,
    selected_columns,
    small_hash,
    small_hashed_cell,
)
from cdp.exports.formats.fields import (
    birth_date,
    meta_city,
    meta_country,
    meta_email,
    meta_gender,
    meta_name,
    meta_phone,
    meta_state,
    meta_zip,
)
from cdp.exports.formats.hashing import sha256_hex

# (header, profile field, normaliser, cell maker), in file order.
_COLUMNS: tuple[Column, ...] = (
    ("email", "email", meta_email, hashed_cell),
    ("phone", "phone", meta_phone, hashed_cell),
    ("fn", "first_name", meta_name, hashed_cell),
    ("ln", "last_name", meta_name, hashed_cell),
    ("ct", "city", meta_city, hashed_cell),
    ("st", "state", meta_state, hashed_cell),
    ("zip", "postal_code", meta_zip, hashed_cell),
    ("country", "country", meta_country, small_hashed_cell),
    ("gen", "gender", meta_gender, small_hashed_cell),
)
_BIRTH_HEADERS = ("doby", "dobm", "dobd")
# Columns whose values repeat across a list (names, places): cells memoised per export.
_MEMO = frozenset({"fn", "ln", "ct", "st", "zip", "country", "gen"})
_NO_BIRTH = ("", "", "")
# DOBM "MM" and DOBD "DD" hashed once: index 1 is "01".
_MONTH_HASHES = ("", *(sha256_hex(f"{month:02d}") for month in range(1, 13)))
_DAY_HASHES = ("", *(sha256_hex(f"{day:02d}") for day in range(1, 32)))
#: Birth dates memoised per export: every valid one lies between 1900-01-01 and today (~46,000
#: dates), so a memo this size ends up answering nearly every row; an entry is small (the
#: cells are shared strings).
BIRTH_MEMO_LIMIT = 65_536
# DOBY "YYYY" of the years a birth date can have this century (others through small_hash).
_YEAR_HASHES = {year: sha256_hex(f"{year:04d}") for year in range(1900, 2100)}


class MetaCustomAudience(RowMixin):
    """Rows for a Meta customer-file custom audience (CSV upload or Marketing API payload)."""

    name = "meta_custom_audience"
    headers: tuple[str, ...] = tuple(column[0] for column in _COLUMNS) + _BIRTH_HEADERS
    #: The same columns as Marketing API multi-key schema keys, for an API payload.
    api_schema: tuple[str, ...] = tuple(header.upper() for header in headers)
    hashed_headers: frozenset[str] = frozenset(headers)
    fields_required = MappingProxyType(
        {
            "email": ("email",),
            "phone": ("phone", "country"),
            "fn": ("first_name",),
            "ln": ("last_name",),
            "ct": ("city",),
            "st": ("state", "country"),
            "zip": ("postal_code", "country"),
            "country": ("country",),
            "gen": ("gender",),
            "doby": ("birthday",),
            "dobm": ("birthday",),
            "dobd": ("birthday",),
        }
    )

    def __init__(self, *, today: date | None = None) -> None:
        """``today`` bounds birth dates (none in the future); defaults to the current date."""
        self._today = today if today is not None else date.today()

    def row_with_drops(
        self, profile: Profile, *, default_region: str
    ) -> tuple[list[str], tuple[str, ...]]:
        """The row's cells and the headers of present-but-unusable columns."""
        cells, drops = column_cells(_COLUMNS, profile, default_region)
        cells.extend(self._birth_cells(profile.get("birthday"), drops))
        return cells, tuple(drops)

    def row_maker(self, headers: Sequence[str], *, default_region: str) -> RowFunction:
        """Only the cells of ``headers``, in file order (see ``AudienceFormat.row_maker``)."""
        columns = selected_columns(_COLUMNS, headers, self.headers)
        births = tuple(i for i, header in enumerate(_BIRTH_HEADERS) if header in set(headers))
        birth_cells = self._birth_cells
        every = len(births) == len(_BIRTH_HEADERS)

        def wanted(value: object) -> tuple[str, ...]:
            cells = birth_cells(value, [])
            return cells if every else tuple([cells[i] for i in births])

        memo = CellMemo(wanted, BIRTH_MEMO_LIMIT)  # birth date -> its wanted cells

        def birth(profile: Profile) -> tuple[str, ...]:
            return memo[profile.get("birthday")]

        return columns_function(
            columns,
            regional={c[0] for c in columns if self.fields_required[c[0]][1:]},
            default_region=default_region,
            memo=_MEMO,
            tail=birth if births else None,
        )

    def _birth_cells(self, value: object, drops: list[str]) -> tuple[str, str, str]:
        """DOBY ``YYYY``, DOBM ``MM`` and DOBD ``DD``, hashed; blanks if missing or unusable."""
        if value is None or (isinstance(value, str) and (not value or value.isspace())):
            return _NO_BIRTH
        born = birth_date(value, self._today) if isinstance(value, date | str) else None
        if born is None:
            drops.extend(_BIRTH_HEADERS)
            return _NO_BIRTH
        year = _YEAR_HASHES.get(born.year) or small_hash(f"{born.year:04d}")
        return year, _MONTH_HASHES[born.month], _DAY_HASHES[born.day]
