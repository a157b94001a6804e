"""The data vocabulary of access control: data categories, the fields in each, and purposes of use.

A *category* groups profile fields that are protected together. The three PII categories
(``contact``, ``identity``, ``address``) hold readable personal values kept encrypted in the PII
vault; they are addressed in the policy as ``pii:<category>``. The other categories (``behaviour``,
``traits``, ``consent``) are pseudonymous data, addressed as ``data:<category>``.

A *purpose* is why a request is made. Every request carries one (``X-Purpose`` header, ``--purpose``
on the CLI) and the policy says which purposes each role may use for which resources.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType


class Category(StrEnum):
    """A data category: a group of profile fields protected together."""

    CONTACT = "contact"
    IDENTITY = "identity"
    ADDRESS = "address"
    BEHAVIOUR = "behaviour"
    TRAITS = "traits"
    CONSENT = "consent"


CATEGORIES: tuple[str, ...] = tuple(c.value for c in Category)
"""Every data category, in a stable order."""

PII_CATEGORIES: frozenset[str] = frozenset(
    {Category.CONTACT.value, Category.IDENTITY.value, Category.ADDRESS.value}
)
"""Categories whose fields are readable personal data (encrypted in the PII vault)."""

FIELD_CATEGORY: Mapping[str, str] = MappingProxyType(
    {
        "email": Category.CONTACT.value,
        "phone": Category.CONTACT.value,
        "first_name": Category.IDENTITY.value,
        "last_name": Category.IDENTITY.value,
        "birthday": Category.IDENTITY.value,
        "gender": Category.IDENTITY.value,
        "street": Category.ADDRESS.value,
        "city": Category.ADDRESS.value,
        "postal_code": Category.ADDRESS.value,
        "state": Category.ADDRESS.value,
        "country": Category.ADDRESS.value,
        "orders": Category.BEHAVIOUR.value,
        "events": Category.BEHAVIOUR.value,
        "traits": Category.TRAITS.value,
        "consent": Category.CONSENT.value,
    }
)
"""Profile field -> the category that protects it (read-only)."""

PII_FIELDS: frozenset[str] = frozenset(f for f, c in FIELD_CATEGORY.items() if c in PII_CATEGORIES)
"""Fields holding readable personal data; they are only ever stored encrypted."""

_FIELDS_BY_CATEGORY: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {c: tuple(f for f, fc in FIELD_CATEGORY.items() if fc == c) for c in CATEGORIES}
)


def fields_in(category: str) -> tuple[str, ...]:
    """Return the profile fields of ``category`` in a stable order.

    Raises ``ValueError`` for a name that is not a category.
    """
    try:
        return _FIELDS_BY_CATEGORY[category]
    except KeyError:
        raise ValueError(f"unknown data category: {category!r}") from None


def category_of(field: str) -> str:
    """Return the category protecting profile ``field``; ``ValueError`` for an unknown field."""
    try:
        return FIELD_CATEGORY[field]
    except KeyError:
        raise ValueError(f"unknown profile field: {field!r}") from None


def resource_for(category: str) -> str:
    """Return the policy resource that addresses ``category``: ``pii:<c>`` or ``data:<c>``."""
    if category not in _FIELDS_BY_CATEGORY:
        raise ValueError(f"unknown data category: {category!r}")
    prefix = "pii" if category in PII_CATEGORIES else "data"
    return f"{prefix}:{category}"


class Purpose(StrEnum):
    """Why a request is made. Every request names exactly one purpose."""

    SUPPORT = "support"
    PRIVACY_REQUEST = "privacy_request"
    ANALYTICS = "analytics"
    MARKETING = "marketing"
    AUDIT = "audit"
    OPERATIONS = "operations"
    EMAIL_MARKETING = "email_marketing"
    SMS_MARKETING = "sms_marketing"
    PUSH_MARKETING = "push_marketing"
    PERSONALIZATION = "personalization"
    AD_AUDIENCES = "ad_audiences"

    @property
    def description(self) -> str:
        """One line saying what the purpose covers."""
        return PURPOSE_DESCRIPTIONS[self.value]


PURPOSE_DESCRIPTIONS: Mapping[str, str] = MappingProxyType(
    {
        "support": "Helping the one customer who contacted the shop (single-profile reads).",
        "privacy_request": "Serving a data-subject request: access, rectification, erasure, "
        "portability, objection.",
        "analytics": "Aggregate and pseudonymous analysis: RFM, CLV, churn, layers, metrics.",
        "marketing": "Planning campaigns: building and reviewing segments; nothing is sent.",
        "audit": "Compliance review of who read or received which data, and of consent evidence.",
        "operations": "Running cdp itself: principals, keys, sources, destinations, ingestion.",
        "email_marketing": "Consent purpose: sending marketing email (export to an email tool).",
        "sms_marketing": "Consent purpose: sending marketing SMS (export to an SMS tool).",
        "push_marketing": "Consent purpose: sending app push notifications.",
        "personalization": "Consent purpose: personalised recommendations and content.",
        "ad_audiences": "Consent purpose: hashed customer lists uploaded to ad platforms.",
    }
)
"""Purpose name -> description (read-only)."""

PURPOSES: tuple[str, ...] = tuple(p.value for p in Purpose)
"""Every purpose of use, in a stable order."""

CONSENT_PURPOSES: frozenset[str] = frozenset(
    {
        Purpose.EMAIL_MARKETING.value,
        Purpose.SMS_MARKETING.value,
        Purpose.PUSH_MARKETING.value,
        Purpose.PERSONALIZATION.value,
        Purpose.AD_AUDIENCES.value,
    }
)
"""Purposes that need the subject's consent; an export runs under its destination's purpose."""
