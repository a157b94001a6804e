"""Google Ads Customer Match customer lists.

Columns are the English headers of Google's customer-list upload file. Email, phone and names
are sent as SHA-256 hex digests of the normalised value; Country and Zip are sent in plain
text, as Google requires (see ``docs/audience-formats.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from types import MappingProxyType

from cdp.exports.formats.base import (
    Column,
    Profile,
    RowFunction,
    RowMixin,
    column_cells,
    columns_function,
    hashed_cell,
    plain_cell,
    selected_columns,
)
from cdp.exports.formats.fields import e164, google_country, google_email, google_zip

_NAME_PREFIXES = frozenset({"mr", "mrs", "ms", "miss", "mx", "dr"})
_NAME_SUFFIXES = frozenset({"jr", "sr", "ii", "iii", "iv"})


def google_first_name(raw: str, region: str = "") -> str:
    """Lower-cased, trimmed, inner whitespace collapsed, leading titles (``Mrs.``) removed."""
    value = " ".join(raw.split()).lower()
    while True:
        head, _, rest = value.partition(" ")
        if not rest or head.rstrip(".") not in _NAME_PREFIXES:
            return value
        value = rest


def google_last_name(raw: str, region: str = "") -> str:
    """Lower-cased, trimmed, inner whitespace collapsed, trailing suffixes (``Jr.``) removed."""
    value = " ".join(raw.split()).lower()
    while True:
        cut = max(value.rfind(" "), value.rfind(","))  # "smith, jr." and "smith,jr." alike
        rest, tail = value[:cut].rstrip(" ,"), value[cut + 1 :]
        if cut < 0 or not rest or tail.rstrip(".") not in _NAME_SUFFIXES:
            return value
        value = rest


# Columns whose values repeat across a list (names, places): cells memoised per export.
_MEMO = frozenset({"First Name", "Last Name", "Country", "Zip"})

# (header, profile field, normaliser, cell maker), in file order.
_COLUMNS: tuple[Column, ...] = (
    ("Email", "email", google_email, hashed_cell),
    ("Phone", "phone", e164, hashed_cell),
    ("First Name", "first_name", google_first_name, hashed_cell),
    ("Last Name", "last_name", google_last_name, hashed_cell),
    ("Country", "country", google_country, plain_cell),
    ("Zip", "postal_code", google_zip, plain_cell),
)


class GoogleCustomerMatch(RowMixin):
    """Rows for a Google Ads Customer Match customer list (contact-information matching)."""

    name = "google_customer_match"
    headers: tuple[str, ...] = tuple(column[0] for column in _COLUMNS)
    hashed_headers: frozenset[str] = frozenset(
        column[0] for column in _COLUMNS if column[3] is not plain_cell
    )
    fields_required = MappingProxyType(
        {
            "Email": ("email",),
            "Phone": ("phone", "country"),
            "First Name": ("first_name",),
            "Last Name": ("last_name",),
            "Country": ("country",),
            "Zip": ("postal_code", "country"),
        }
    )

    def __init__(self, *, today: date | None = None) -> None:
        """``today`` is accepted for a uniform factory; this format has no date columns."""
        self._today = today

    def row_with_drops(
        self, profile: Profile, *, default_region: str
    ) -> tuple[list[str], tuple[str, ...]]:
        """The row's cells and the headers of present-but-unusable columns."""
        cells, drops = column_cells(_COLUMNS, profile, default_region)
        return cells, tuple(drops)

    def row_maker(self, headers: Sequence[str], *, default_region: str) -> RowFunction:
        """Only the cells of ``headers``, in file order (see ``AudienceFormat.row_maker``)."""
        columns = selected_columns(_COLUMNS, headers, self.headers)
        return columns_function(
            columns,
            regional={c[0] for c in columns if self.fields_required[c[0]][1:]},
            default_region=default_region,
            memo=_MEMO,
        )
