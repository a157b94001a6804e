"""The words of the access policy: the resources a request addresses, the actions it does,
and the effect of a policy row."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from cdp.access.categories import CATEGORIES, resource_for


class Resource(StrEnum):
    """What a request addresses: a data category, the pseudonymous profile, or a function."""

    PII_CONTACT = "pii:contact"
    PII_IDENTITY = "pii:identity"
    PII_ADDRESS = "pii:address"
    DATA_BEHAVIOUR = "data:behaviour"
    DATA_TRAITS = "data:traits"
    DATA_CONSENT = "data:consent"
    PROFILE = "profile"
    PRINCIPALS = "principals"
    KEYS = "keys"
    SOURCES = "sources"
    DESTINATIONS = "destinations"
    SEGMENTS = "segments"
    EXPORTS = "exports"
    METRICS = "metrics"
    AUDIT_LOG = "audit_log"
    AUDIT_REPORTS = "audit_reports"
    PRIVACY_REQUESTS = "privacy_requests"
    INGEST = "ingest"
    OPS = "ops"


class Action(StrEnum):
    """What a request does to its resource."""

    READ = "read"
    WRITE = "write"
    CREATE = "create"
    RUN = "run"
    DELETE = "delete"
    ADMIN = "admin"


class Effect(StrEnum):
    """The effect of a policy row."""

    ALLOW = "allow"
    DENY = "deny"


RESOURCES: tuple[str, ...] = tuple(r.value for r in Resource)
"""Every resource name the policy may use."""

ACTIONS: tuple[str, ...] = tuple(a.value for a in Action)
"""Every action name the policy may use."""

CATEGORY_RESOURCES: tuple[str, ...] = tuple(resource_for(c) for c in CATEGORIES)
"""The resources that address data categories (``pii:*`` and ``data:*``), in category order."""

ANY_PURPOSE: Final = "*"
"""Purpose wildcard in policy rows: any purpose cdp knows. Only deny rows may use it."""
