"""What every audience format offers, and the small helpers the formats share."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import date
from itertools import islice
from typing import Any, Protocol, TypeVar

from cdp.exports.formats.fields import region_for
from cdp.exports.formats.hashing import prehashed, sha256_hex
from cdp.exports.formats.tables import ISO_ALPHA2

#: One decrypted profile: cdp field name to its value (``None`` or missing when unknown).
Profile = Mapping[str, str | date | None]

#: The cdp profile fields the formats read.
PROFILE_FIELDS = (
    "email",
    "phone",
    "first_name",
    "last_name",
    "city",
    "state",
    "postal_code",
    "country",
    "gender",
    "birthday",
)


class AudienceFormat(Protocol):
    """A customer-list layout for one ad platform: columns and how each cell is made."""

    @property
    def name(self) -> str:
        """Registry name, e.g. ``meta_custom_audience``."""
        ...

    @property
    def headers(self) -> tuple[str, ...]:
        """Column headers, in order, exactly as the platform's upload file expects them."""
        ...

    @property
    def hashed_headers(self) -> frozenset[str]:
        """The columns whose cells are SHA-256 hex digests (the others are plain text)."""
        ...

    @property
    def fields_required(self) -> Mapping[str, tuple[str, ...]]:
        """For each column header, the cdp profile fields its cell is made from: first the
        column's own field, then any that only steer its normalisation (``country`` for a
        phone number's region)."""
        ...

    def row(self, profile: Profile, *, default_region: str) -> list[str]:
        """The row's cells (``""`` where the value is missing or unusable)."""
        ...

    def row_with_drops(
        self, profile: Profile, *, default_region: str
    ) -> tuple[list[str], tuple[str, ...]]:
        """The row's cells and the headers of the columns whose value was present but
        unusable (so an export can count them); never the values themselves."""
        ...

    def row_maker(self, headers: Sequence[str], *, default_region: str) -> RowFunction:
        """A function making, for one profile, only the cells of ``headers`` (a subset of
        :attr:`headers`), in file order; columns not asked for are never computed. Each cell
        equals the same column's cell of :meth:`row`."""
        ...


#: Cells of the selected columns of one profile (see :meth:`AudienceFormat.row_maker`).
RowFunction = Callable[[Profile], list[str]]

#: A column's normaliser: the raw text and the profile's region in, the platform's form out.
Normaliser = Callable[[str, str], str]

_sha256 = hashlib.sha256


class RowMixin:
    """What every concrete format shares: ``row`` from ``row_with_drops``, and a repr without
    data."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def row(self, profile: Profile, *, default_region: str) -> list[str]:
        """The row's cells (``""`` where the value is missing or unusable)."""
        return self.row_with_drops(profile, default_region=default_region)[0]

    def row_with_drops(
        self, profile: Profile, *, default_region: str
    ) -> tuple[list[str], tuple[str, ...]]:
        raise NotImplementedError


def as_text(value: object) -> str | None:
    """A profile value as text (``None`` stays ``None``)."""
    if value is None or isinstance(value, str):
        return value
    return str(value)


def _unusable(raw: str, header: str, drops: list[str]) -> str:
    """Record ``header`` as dropped unless ``raw`` was blank (blank is missing, not bad)."""
    if raw and not raw.isspace():
        drops.append(header)
    return ""


def hashed_cell(
    value: object, normalise: Normaliser, region: str, header: str, drops: list[str]
) -> str:
    """One hashed cell: ``sha256_hex`` of the normalised value; the value itself, lower-cased,
    if it already is a SHA-256 hex digest; ``""`` if missing, or if unusable (and then
    ``header`` is appended to ``drops``)."""
    if value is None:
        return ""
    raw = value if isinstance(value, str) else str(value)
    if len(raw) >= 64:
        already = prehashed(raw)
        if already is not None:
            return already
    normalised = normalise(raw, region)
    if normalised:
        return _sha256(normalised.encode()).hexdigest()
    return _unusable(raw, header, drops)


_SMALL_HASHES: dict[str, str] = {}


def small_hash(normalised: str) -> str:
    """``sha256_hex`` memoised, for columns with few distinct values (gender, dates, country)."""
    digest = _SMALL_HASHES.get(normalised)
    if digest is None:
        digest = sha256_hex(normalised)
        if len(_SMALL_HASHES) < 4096:
            _SMALL_HASHES[normalised] = digest
    return digest


def small_hashed_cell(
    value: object, normalise: Normaliser, region: str, header: str, drops: list[str]
) -> str:
    """Like :func:`hashed_cell`, with memoised hashes for low-cardinality columns."""
    if value is None:
        return ""
    raw = value if isinstance(value, str) else str(value)
    if len(raw) >= 64:
        already = prehashed(raw)
        if already is not None:
            return already
    normalised = normalise(raw, region)
    if normalised:
        return small_hash(normalised)
    return _unusable(raw, header, drops)


def plain_cell(
    value: object, normalise: Normaliser, region: str, header: str, drops: list[str]
) -> str:
    """One unhashed cell: the normalised value, or ``""`` (missing or unusable, as above)."""
    if value is None:
        return ""
    raw = value if isinstance(value, str) else str(value)
    return normalise(raw, region) or _unusable(raw, header, drops)


#: The signature shared by the three cell makers above.
CellMaker = Callable[[object, Normaliser, str, str, list[str]], str]

#: One column: header, profile field, normaliser, cell maker.
Column = tuple[str, str, Normaliser, CellMaker]


def column_cells(
    columns: Sequence[Column], profile: Profile, default_region: str
) -> tuple[list[str], list[str]]:
    """Every column's cell of ``profile`` (phones read in the profile's country, else
    ``default_region``), and the headers of present-but-unusable values."""
    get = profile.get
    region = region_for(as_text(get("country")), check_region(default_region))
    drops: list[str] = []
    cells = [
        make(get(field), normalise, region, header, drops)
        for header, field, normalise, make in columns
    ]
    return cells, drops


def selected_columns(
    columns: Sequence[Column], headers: Sequence[str], every: Sequence[str]
) -> tuple[Column, ...]:
    """The ``columns`` whose header is in ``headers``, in file order; ``ValueError`` for a
    header the format does not have."""
    wanted = set(headers)
    unknown = wanted.difference(every)
    if unknown:
        raise ValueError(f"not columns of this format: {', '.join(sorted(unknown))}")
    return tuple(column for column in columns if column[0] in wanted)


#: Entries kept per memoised column while a row function lives (the oldest half is dropped when
#: it is full).
MEMO_LIMIT = 8_192


def remember(memo: dict[Any, Any], key: object, value: object, limit: int = MEMO_LIMIT) -> None:
    """Store ``key`` in a bounded memo: when it holds ``limit`` entries, the oldest half (in
    insertion order) goes first, so the values that keep coming back mostly stay."""
    if len(memo) >= limit:
        for old in list(islice(memo, max(1, limit // 2))):
            del memo[old]
    memo[key] = value


def memoised(make: CellMaker, limit: int = MEMO_LIMIT) -> CellMaker:
    """``make`` remembering its cells by (value, region), for columns whose values repeat
    (names, places, postal codes): a repeated value costs one dict lookup instead of folding
    and hashing. The memo belongs to one row function (one export) and is bounded."""
    memo: dict[tuple[object, str], tuple[str, bool]] = {}

    def cell(
        value: object, normalise: Normaliser, region: str, header: str, drops: list[str]
    ) -> str:
        key = (value, region)
        known = memo.get(key)
        if known is None:
            dropped: list[str] = []
            known = (make(value, normalise, region, header, dropped), bool(dropped))
            remember(memo, key, known, limit)
        if known[1]:
            drops.append(header)
        return known[0]

    return cell


_V = TypeVar("_V")


class CellMemo(dict[Any, _V]):
    """One memoised column's cells for a row function's life, by key (the value, or the value
    and region of a regional column): a repeated key costs one subscript; a new one calls
    ``make(key)`` and is stored, bounded like :func:`remember`."""

    __slots__ = ("limit", "make")

    def __init__(self, make: Callable[[Any], _V], limit: int = MEMO_LIMIT) -> None:
        super().__init__()
        self.make = make
        self.limit = limit

    def __missing__(self, key: Any) -> _V:
        cell = self.make(key)
        remember(self, key, cell, self.limit)
        return cell

    def __repr__(self) -> str:  # never the values it holds
        return f"CellMemo(size={len(self)})"


def columns_function(
    columns: Sequence[Column],
    *,
    regional: Collection[str],
    default_region: str,
    memo: frozenset[str] = frozenset(),
    tail: Callable[[Profile], Sequence[str]] | None = None,
) -> RowFunction:
    """A row function over ``columns``: the profile's region (its country, else the default)
    is worked out only when one of the columns is ``regional`` (its cell depends on the
    region); the cells of the ``memo`` columns are remembered for the row function's life,
    keyed by the value (and the region, for a regional column), bounded (:class:`CellMemo`);
    ``tail`` appends further cells (made from the profile). The row function returns cells
    only, so which present values were unusable is not tracked here (``row_with_drops`` does)."""
    fallback = check_region(default_region)
    needs_region = any(head in regional for head, _, _, _ in columns)

    def value_memo(head: str, norm: Normaliser, make: CellMaker) -> CellMemo[str]:
        # not regional: the cell does not depend on the region, so the fallback stands in
        return CellMemo(lambda value: make(value, norm, fallback, head, []))

    def regional_memo(head: str, norm: Normaliser, make: CellMaker) -> CellMemo[str]:
        return CellMemo(lambda key: make(key[0], norm, key[1], head, []))

    # per column: (field, memo or None, keyed by region too, cell maker, normaliser, header)
    chosen: tuple[tuple[str, CellMemo[str] | None, bool, CellMaker, Normaliser, str], ...] = tuple(
        (
            field,
            None
            if head not in memo
            else (regional_memo if head in regional else value_memo)(head, norm, make),
            head in regional,
            make,
            norm,
            head,
        )
        for head, field, norm, make in columns
    )
    # country value -> region (a few hundred at most; bounded all the same)
    regions = CellMemo(lambda country: region_for(as_text(country), fallback), 1024)

    def row(profile: Profile) -> list[str]:
        get = profile.get
        region = regions[get("country")] if needs_region else fallback
        drops: list[str] = []  # required by the cell makers; not reported by a row function
        cells: list[str] = []
        append = cells.append
        for field, remembered, by_region, make, norm, head in chosen:
            if remembered is None:
                append(make(get(field), norm, region, head, drops))
            elif by_region:
                append(remembered[get(field), region])
            else:
                append(remembered[get(field)])
        if tail is not None:
            cells.extend(tail(profile))
        return cells

    return row


_CHECKED_REGIONS: dict[str, str] = {}


def check_region(default_region: str) -> str:
    """The default region upper-cased; ``ValueError`` unless it is an assigned ISO 3166-1
    alpha-2 code."""
    region = _CHECKED_REGIONS.get(default_region)
    if region is None:
        region = default_region.upper()
        if region not in ISO_ALPHA2:
            raise ValueError("default_region must be an ISO 3166-1 alpha-2 code")
        _CHECKED_REGIONS[default_region] = region
    return region
