"""Egress hashing: plain, unkeyed SHA-256 as the ad platforms require.

This is deliberately *not* cdp's internal pseudonym (keyed, versioned HMAC): an egress hash
must be reproducible by the platform, so it carries no key. The two are never interchangeable.

A value that already is a SHA-256 hex digest (64 hex digits, either case) is passed through,
lower-cased, instead of being hashed a second time: a platform matches ``sha256(value)``,
never ``sha256(sha256(value))``.
"""

from __future__ import annotations

import hashlib
import re

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_sha256 = hashlib.sha256


def is_sha256_hex(value: str) -> bool:
    """Whether ``value`` is exactly 64 hexadecimal digits (upper, lower or mixed case)."""
    return len(value) == 64 and _HEX64.fullmatch(value) is not None


def sha256_hex(normalised: str) -> str:
    """The lower-case hex SHA-256 of the UTF-8 bytes of ``normalised``."""
    return _sha256(normalised.encode()).hexdigest()


def prehashed(raw: str) -> str | None:
    """The lower-cased digest if ``raw`` (trimmed) is already a SHA-256 hex digest, else None."""
    if len(raw) < 64:
        return None
    candidate = raw.strip()
    if is_sha256_hex(candidate):
        return candidate.lower()
    return None


def hash_or_empty(normalised: str) -> str:
    """``sha256_hex(normalised)``, or the empty string for an empty (unusable) value."""
    return _sha256(normalised.encode()).hexdigest() if normalised else ""
