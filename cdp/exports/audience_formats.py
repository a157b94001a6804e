"""Customer-list formats for ad platforms: egress normalisation and hashing.

cdp keeps its internal pseudonyms (keyed HMAC) apart from egress hashes. An ad platform wants
plain SHA-256 (lower-case hex) of a value normalised *its* way, so each platform gets one
strategy class here, found by name::

    fmt = get_format("meta_custom_audience")
    writer.writerow(fmt.headers)
    for profile in decrypted_profiles:
        cells, dropped = fmt.row_with_drops(profile, default_region="US")
        writer.writerow(cells)
        unusable.update(dropped)          # column headers only, never values

A value that already is a SHA-256 hex digest is passed through lower-cased, never hashed
twice. A value that cannot be normalised (an unparseable phone number, a malformed email)
leaves its cell empty and is reported in ``dropped``; nothing raises on bad data. The rules,
and the platform documents they come from, are in ``docs/audience-formats.md``.
"""

from __future__ import annotations

from datetime import date

from cdp.exports.formats.base import PROFILE_FIELDS, AudienceFormat, Profile
from cdp.exports.formats.google import GoogleCustomerMatch
from cdp.exports.formats.hashing import is_sha256_hex, sha256_hex
from cdp.exports.formats.meta import MetaCustomAudience

__all__ = [
    "PROFILE_FIELDS",
    "AudienceFormat",
    "GoogleCustomerMatch",
    "MetaCustomAudience",
    "Profile",
    "UnknownAudienceFormatError",
    "available_formats",
    "get_format",
    "is_sha256_hex",
    "sha256_hex",
]

_REGISTRY: dict[str, type[MetaCustomAudience] | type[GoogleCustomerMatch]] = {
    MetaCustomAudience.name: MetaCustomAudience,
    GoogleCustomerMatch.name: GoogleCustomerMatch,
}


class UnknownAudienceFormatError(LookupError):
    """No audience format is registered under the requested name."""


def available_formats() -> tuple[str, ...]:
    """The registered format names, sorted."""
    return tuple(sorted(_REGISTRY))


def get_format(name: str, *, today: date | None = None) -> AudienceFormat:
    """A fresh instance of the format registered as ``name``.

    ``today`` bounds birth dates where a format has them (default: the current date).
    Raises :class:`UnknownAudienceFormatError` for a name that is not registered.
    """
    try:
        cls = _REGISTRY[name]
    except KeyError:
        known = ", ".join(available_formats())
        raise UnknownAudienceFormatError(
            f"unknown audience format {name!r}; known formats: {known}"
        ) from None
    return cls(today=today)
