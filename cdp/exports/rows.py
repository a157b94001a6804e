"""Turning a decrypted profile into one output row, holding only what the destination may get.

Minimisation happens twice: only the destination's fields are decrypted (``needs``), and a row
is built only from those. For the ad-platform kinds the columns are the format's columns whose
own field the destination allows (an ``email``-only Meta destination gets an ``email`` column and
nothing else); the platform's normalisation and SHA-256 come from
:mod:`cdp.exports.audience_formats`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from cdp.exports.audience_formats import get_format
from cdp.validation import defuse

#: What :meth:`RowMaker.make_chunk` returns: the ids with a row, their rows (same order), and
#: the ids without any usable value.
Chunk = tuple[list[str], list[list[str]], list[str]]


class RowMaker(Protocol):
    """Headers and the row of one profile (``None`` when no cell has a usable value)."""

    @property
    def headers(self) -> tuple[str, ...]: ...

    @property
    def needs(self) -> tuple[str, ...]:
        """The profile fields to decrypt (a subset of the destination's fields)."""
        ...

    @property
    def digests_only(self) -> bool:
        """Whether every cell is a SHA-256 hex digest or empty (every column hashed)."""
        ...

    def make(self, profile: Mapping[str, str]) -> list[str] | None: ...

    def make_chunk(self, ids: Sequence[str], profiles: Mapping[str, Mapping[str, str]]) -> Chunk:
        """The rows of a chunk's subjects, in ``ids`` order (one call per chunk, not per row)."""
        ...


def _chunk(
    row: Callable[[Mapping[str, str]], list[str]],
    ids: Sequence[str],
    profiles: Mapping[str, Mapping[str, str]],
) -> Chunk:
    """``row`` over the chunk; a subject without a profile or with only empty cells is
    skipped."""
    out_ids: list[str] = []
    rows: list[list[str]] = []
    skipped: list[str] = []
    get = profiles.get
    for sid in ids:
        profile = get(sid)
        if profile is not None:
            cells = row(profile)
            if any(cells):
                out_ids.append(sid)
                rows.append(cells)
                continue
        skipped.append(sid)
    return out_ids, rows, skipped


_AS_IS = frozenset({"phone"})
"""Fields whose stored form is never a formula: a phone is E.164 (``+`` then digits only)."""


class PlainRows:
    """CSV, JSON Lines and webhook rows: the allowed fields, in clear, in a stable order.

    ``spreadsheet``: the rows go to a CSV file, which people open in spreadsheets, so a cell
    that starts like a formula is prefixed with ``'`` (:func:`defuse`); JSON Lines and webhook
    bodies carry values exactly as stored."""

    def __init__(self, fields: Sequence[str], *, spreadsheet: bool = False) -> None:
        self.headers = tuple(fields)
        self.needs = tuple(fields)
        self.digests_only = False
        self._defused = tuple(spreadsheet and f not in _AS_IS for f in self.headers)
        self._row = self._spreadsheet_row if any(self._defused) else self._plain_row

    def _plain_row(self, profile: Mapping[str, str]) -> list[str]:
        get = profile.get
        return [get(f) or "" for f in self.headers]

    def _spreadsheet_row(self, profile: Mapping[str, str]) -> list[str]:
        get = profile.get
        cells = []
        for f, defused in zip(self.headers, self._defused, strict=True):
            value = get(f) or ""
            cells.append(defuse(value) if defused else value)
        return cells

    def make(self, profile: Mapping[str, str]) -> list[str] | None:
        cells = self._row(profile)
        return cells if any(cells) else None

    def make_chunk(self, ids: Sequence[str], profiles: Mapping[str, Mapping[str, str]]) -> Chunk:
        return _chunk(self._row, ids, profiles)


class AudienceRows:
    """An ad platform's customer-list columns that the destination's fields allow."""

    def __init__(self, format_name: str, fields: Sequence[str], *, default_region: str) -> None:
        fmt = get_format(format_name)
        allowed = set(fields)
        required = fmt.fields_required
        self.headers = tuple(h for h in fmt.headers if required[h][0] in allowed)
        used = {f for h in self.headers for f in required[h]}
        self.needs = tuple(f for f in fields if f in used)
        self.digests_only = all(h in fmt.hashed_headers for h in self.headers)
        # only the allowed columns are ever computed (and only their fields decrypted)
        self._row = fmt.row_maker(self.headers, default_region=default_region)

    def make(self, profile: Mapping[str, str]) -> list[str] | None:
        cells = self._row(profile)
        return cells if any(cells) else None

    def make_chunk(self, ids: Sequence[str], profiles: Mapping[str, Mapping[str, str]]) -> Chunk:
        return _chunk(self._row, ids, profiles)
