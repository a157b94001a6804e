"""The information GDPR art. 15(1) owes beside the data: the ``processing`` section of the
access package.

Generated from cdp's own configuration, so that it cannot drift from what cdp does: the purposes
(:data:`cdp.consent.purposes.PURPOSES`) with the person's current state for each (a); the
categories of personal data held, by :data:`cdp.access.categories.FIELD_CATEGORY` (b); the
retention windows of the registry's tables (:data:`cdp.privacy.registry.ENTRIES`) and the
retention settings (d); the rights and the ways the controller serves them
(:class:`cdp.privacy.requests.RequestType`) (e); the complaint right and the supervisory
authority (``CDP_SUPERVISORY_AUTHORITY``) (f); the source names recorded on the person's orders,
events and consent choices (g); and the profiling: the trait tables the registry files under
``traits``, their logic with the configured rules (``CDP_TRAITS_CONFIG``), their basis
(``analytics``) and how segments built on them are used (h). Recipients (c) are the package's
``recipients`` section.

The section is built from the package already assembled (its consent, orders, events, identities
and traits), so it names nothing the rest of the package does not hold about the person.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from cdp.access.categories import FIELD_CATEGORY, Category
from cdp.consent.purposes import PURPOSES, LawfulBasis
from cdp.db.all_models import metadata
from cdp.privacy.registry import Treatment, present_entries
from cdp.privacy.requests import RequestType
from cdp.settings import Settings
from cdp.traits.config import TraitsConfig, load_traits_config

CUSTOM = "custom"
IDENTIFIERS = "identifiers"
PROFILING_PURPOSE = "analytics"

CATEGORY_DESCRIPTIONS: Mapping[str, str] = MappingProxyType(
    {
        Category.CONTACT.value: "Contact details (stored encrypted).",
        Category.IDENTITY.value: "Name and personal details (stored encrypted).",
        Category.ADDRESS.value: "Postal address (stored encrypted).",
        CUSTOM: "Further attributes the shop's customer record carries (stored encrypted).",
        IDENTIFIERS: "Identifiers we recognise you by (stored only as keyed pseudonyms).",
        Category.BEHAVIOUR.value: "Purchases and activity (events' details stored encrypted).",
        Category.TRAITS.value: "Attributes computed from your purchases (see profiling).",
        Category.CONSENT.value: "Your choices for each purpose, with their evidence.",
    }
)
"""Category -> what it covers, told to the person."""

BASIS_ARTICLES: Mapping[str, str] = MappingProxyType(
    {
        LawfulBasis.CONSENT.value: "GDPR art. 6(1)(a)",
        LawfulBasis.CONTRACT.value: "GDPR art. 6(1)(b)",
        LawfulBasis.LEGITIMATE_INTEREST.value: "GDPR art. 6(1)(f)",
    }
)

RIGHTS: Mapping[str, tuple[str, str, str]] = MappingProxyType(
    {
        RequestType.ACCESS.value: (
            "access",
            "GDPR art. 15",
            "Obtain a copy of the data we hold about you and this information.",
        ),
        RequestType.PORTABILITY.value: (
            "data portability",
            "GDPR art. 20",
            "Receive your data in a machine-readable format (this package's JSON file).",
        ),
        RequestType.RECTIFICATION.value: (
            "rectification",
            "GDPR art. 16",
            "Have inaccurate personal details corrected, including with whoever received them.",
        ),
        RequestType.ERASURE.value: (
            "erasure",
            "GDPR art. 17",
            "Have your data erased; recipients that received it are told.",
        ),
        RequestType.RESTRICTION.value: (
            "restriction of processing",
            "GDPR art. 18",
            "Have your data kept but no longer used (no profiling, segments or exports).",
        ),
        RequestType.OBJECTION.value: (
            "objection",
            "GDPR art. 21",
            "Object to direct marketing (every marketing purpose stops) and to profiling "
            "based on legitimate interest.",
        ),
    }
)
"""Request type -> (right, article, what it gives)."""

COMPLAINT_RIGHT = (
    "You have the right to lodge a complaint with a supervisory authority, in particular in the "
    "EU member state of your habitual residence, place of work or of the alleged infringement "
    "(GDPR art. 77)."
)
PROFILE_COLLECTION = (
    "The shop's customer records, received through cdp's customer connector (customer files "
    "the shop exports, and sign-ups and account changes sent by the shop's sites and apps), "
    "and corrections you asked for (rectification)."
)
PROFILING_USE = (
    "Segments are rules over these traits; a segment selects the people exported to a marketing "
    "destination (email, SMS, push, ad audiences), and only those with a basis for the "
    "destination's purpose are sent. The segments you were placed in are listed in this package."
)
NO_LEGAL_EFFECTS = (
    "No decision producing legal effects concerning you, or similarly significantly affecting "
    "you, is based solely on this processing (GDPR art. 22): it chooses which marketing you may "
    "receive."
)
PROFILING_OBJECTION = (
    "If you object to this profiling and the objection is upheld, or while processing is "
    "restricted, no trait is computed for you and you are in no segment."
)


def _trait_logic(cfg: TraitsConfig) -> dict[str, str]:
    """Trait table -> how it is computed, with the configured rules."""
    lc, vl, loy, pts, clv = cfg.lifecycle, cfg.value_layers, cfg.loyalty, cfg.points, cfg.clv
    tiers = ", ".join(t.name for t in loy.tiers)
    return {
        "subject_traits": (
            "From your orders: number of orders, spend, first and last order, repurchase cycle. "
            "RFM scores 1-5 for recency, frequency and monetary value, by quintile among all "
            "buyers, and the RFM segment read off them. Lifecycle stage: new (first order "
            f"within {lc.new_days} days), active (last order within {lc.active_days} days), at "
            f"risk (within {lc.at_risk_days}), dormant (within {lc.dormant_days}), else churned. "
            f"Value layer: top {vl.high_percent}% of buyers by spend high, next "
            f"{vl.medium_percent}% medium, the rest low."
        ),
        "loyalty_status": (
            f"Loyalty tier ({tiers}) from spend and purchase occasions over the last "
            f"{loy.window_days} days."
        ),
        "loyalty_tier_changes": "The history of your loyalty tier changes.",
        "points_ledger": (
            f"Loyalty points: {pts.per_currency_unit:g} per unit of order value and points for "
            f"listed events, expiring after {pts.expiry_months} months."
        ),
        "clv_predictions": (
            "Expected purchases, probability of still being a customer, churn (that probability "
            f"below {clv.churn_threshold:g}) and customer lifetime value over "
            f"{clv.horizon_weeks:g} weeks, from statistical models (BG/NBD and Gamma-Gamma) "
            "fitted on all customers' order histories."
        ),
    }


def _purposes(consent_current: list[dict[str, Any]]) -> list[dict[str, Any]]:
    state = {s["purpose"]: s for s in consent_current}
    out = []
    for p in PURPOSES.values():
        now = state.get(p.name)
        out.append(
            {
                "purpose": p.name,
                "description": p.description,
                "lawful_basis": p.basis.value,
                "lawful_basis_article": BASIS_ARTICLES[p.basis.value],
                "retention_days": p.retention.days,
                "withdrawal_stops_it": p.withdrawable,
                "objection_withdraws": p.marketing,
                "status": now["status"] if now else p.default_status.value,
                "is_default": now["is_default"] if now else True,
            }
        )
    return out


def _categories(package: Mapping[str, Any]) -> list[dict[str, Any]]:
    held: dict[str, list[str]] = {}
    for field in package["personal_data"]:
        held.setdefault(FIELD_CATEGORY.get(field, CUSTOM), []).append(field)
    if package["identities"]:
        held[IDENTIFIERS] = sorted({i["kind"] for i in package["identities"]})
    behaviour = [s for s in ("orders", "events") if package[s]]
    if behaviour:
        held[Category.BEHAVIOUR.value] = behaviour
    traits = [t["table"] for t in package["traits"] if t["rows"]]
    if traits:
        held[Category.TRAITS.value] = traits
    if package["consent"]["history"]:
        held[Category.CONSENT.value] = ["consent"]
    return [
        {"category": c, "description": d, "fields": sorted(held[c])}
        for c, d in CATEGORY_DESCRIPTIONS.items()
        if c in held
    ]


def _retention(settings: Settings) -> dict[str, Any]:
    windows = [
        {
            "data": e.table,
            "purposes": list(e.retention),
            "days": max(PURPOSES[p].retention.days for p in e.retention),
            "then": "deleted"
            if e.treatment is Treatment.DELETE
            else "kept without the link to you",
        }
        for e in present_entries(metadata)
        if e.retention
    ]
    return {
        "windows": windows,
        "windows_rule": (
            "A record is kept while it is younger than the window of at least one of the listed "
            "purposes for which there is a basis now (consent granted, legitimate interest not "
            "objected to, contract); the days given are the longest of those windows."
        ),
        "inactive_days": settings.retention_inactive_days,
        "inactive_rule": (
            f"All your data is erased once {settings.retention_inactive_days} days pass with no "
            "order, activity, consent change or profile update."
        ),
        "package_days": settings.privacy_package_days,
        "package_rule": (
            f"This package is deleted {settings.privacy_package_days} days after it was produced."
        ),
        "exceptions": (
            "Nothing is deleted by these rules while processing is restricted or a request of "
            "yours is open. The record of who read or received your data is kept as evidence "
            "(GDPR art. 5(2), 30), with pseudonymous ids only."
        ),
    }


def _names(rows: list[dict[str, Any]]) -> list[str]:
    return sorted({r["source"] for r in rows if r.get("source")})


def _sources(package: Mapping[str, Any]) -> list[dict[str, Any]]:
    parts = [
        ("personal_data", bool(package["personal_data"]), PROFILE_COLLECTION, []),
        ("identities", bool(package["identities"]), PROFILE_COLLECTION, []),
        (
            "orders",
            bool(package["orders"]),
            "Order records from the shop, by ingestion source or file name.",
            _names(package["orders"]),
        ),
        (
            "events",
            bool(package["events"]),
            "Activity tracked on the shop's sites and apps, by ingestion source.",
            _names(package["events"]),
        ),
        (
            "consent",
            bool(package["consent"]["history"]),
            "Your choices, by where they were recorded.",
            _names(package["consent"]["history"]),
        ),
    ]
    return [
        {"data": data, "collected_from": how, "sources": names}
        for data, present, how, names in parts
        if present
    ]


def _profiling(settings: Settings, purposes: list[dict[str, Any]]) -> dict[str, Any]:
    logic = _trait_logic(load_traits_config(settings))
    basis = next(p for p in purposes if p["purpose"] == PROFILING_PURPOSE)
    return {
        "lawful_basis_purpose": PROFILING_PURPOSE,
        "lawful_basis": basis["lawful_basis"],
        "analytics_status": basis["status"],
        "traits": [
            {"data": e.table, "logic": logic[e.table]}
            for e in present_entries(metadata)
            if e.section == "traits"
        ],
        "use": PROFILING_USE,
        "legal_effects": False,
        "legal_effects_note": NO_LEGAL_EFFECTS,
        "objection": PROFILING_OBJECTION,
    }


def _rights() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "right": right,
            "article": article,
            "what": what,
            "request_type": kind.value,
            "api": f"POST /v1/privacy-requests {{type: {kind.value}}}",
            "cli": f"cdp privacy request {kind.value}",
        }
        for kind in RequestType
        for right, article, what in (RIGHTS[kind.value],)
    ]
    withdraw: dict[str, Any] = {
        "right": "withdraw consent",
        "article": "GDPR art. 7(3)",
        "what": "Withdraw consent to a purpose at any time, as easily as it was given; "
        "processing before the withdrawal stays lawful.",
        "request_type": None,
        "api": "POST /v1/consent {subject_id, purpose, status: withdrawn}",
        "cli": "cdp consent withdraw SUBJECT_ID PURPOSE",
    }
    return [*out, withdraw]


def processing_section(settings: Settings, package: Mapping[str, Any]) -> dict[str, Any]:
    """The ``processing`` section of ``package`` (its other sections already assembled)."""
    purposes = _purposes(package["consent"]["current"])
    return {
        "controller_contact": settings.privacy_contact,
        "purposes": purposes,
        "categories": _categories(package),
        "retention": _retention(settings),
        "sources": _sources(package),
        "profiling": _profiling(settings, purposes),
        "rights": _rights(),
        "complaint": {
            "right": COMPLAINT_RIGHT,
            "supervisory_authority": settings.supervisory_authority,
        },
    }
