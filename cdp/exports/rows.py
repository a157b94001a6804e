"""Turning a decrypted profile into one output row, holding only what the destination may get.

Minimisation happens twice: only the destination's fields are decrypted (``needs``), and a row
is built only from those. For the ad-platform kinds the columns are the format's columns whose
own field the destination allows (an ``email``-only Meta destination gets an ``email`` column and
nothing else); the platform's normalisation and SHA-256 come from
:mod:`cdp.exports.audience_formats`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from cdp.exports.audience_formats import get_format


class RowMaker(Protocol):
    """Headers and the row of one profile (``None`` when no cell has a usable value)."""

    @property
    def headers(self) -> tuple[str, ...]: ...

    @property
    def needs(self) -> tuple[str, ...]:
        """The profile fields to decrypt (a subset of the destination's fields)."""
        ...

    def make(self, profile: Mapping[str, str]) -> list[str] | None: ...


class PlainRows:
    """CSV, JSON Lines and webhook rows: the allowed fields, in clear, in a stable order."""

    def __init__(self, fields: Sequence[str]) -> None:
        self.headers = tuple(fields)
        self.needs = tuple(fields)

    def make(self, profile: Mapping[str, str]) -> list[str] | None:
        get = profile.get
        cells = [get(f) or "" for f in self.headers]
        return cells if any(cells) else None


class AudienceRows:
    """An ad platform's customer-list columns that the destination's fields allow."""

    def __init__(self, format_name: str, fields: Sequence[str], *, default_region: str) -> None:
        fmt = get_format(format_name)
        allowed = set(fields)
        required = fmt.fields_required
        keep = [i for i, h in enumerate(fmt.headers) if required[h][0] in allowed]
        self._fmt = fmt
        self._keep = keep
        self._all = len(keep) == len(fmt.headers)
        self._region = default_region
        self.headers = tuple(fmt.headers[i] for i in keep)
        used = {f for i in keep for f in required[fmt.headers[i]]}
        self.needs = tuple(f for f in fields if f in used)

    def make(self, profile: Mapping[str, str]) -> list[str] | None:
        cells = self._fmt.row(profile, default_region=self._region)
        if not self._all:
            cells = [cells[i] for i in self._keep]
        return cells if any(cells) else None
