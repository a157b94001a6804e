"""The ``processing`` report: records of processing (GDPR Art. 30(1)), from the policy in force,
the consent configuration and the destinations table.

Per purpose: the data categories each role may read; the policy's export grants (``exports run``:
run an export, whose audit records are ``decrypt`` of the fields sent; ``exports create``:
schedule one); and the recipients, every destination serving the purpose, as a category of
recipient with the fields it may receive (a webhook's URL is not shown, only its kind). cdp does
not know where a recipient processes the data, so transfers to third countries are only named as
unknown.
"""

from __future__ import annotations

from typing import Any, Final

from cdp.access.categories import (
    CATEGORIES,
    PURPOSE_DESCRIPTIONS,
    PURPOSES,
    fields_in,
    resource_for,
)
from cdp.access.engine import get_policy_engine
from cdp.audit.reports import Report
from cdp.clock import Clock, utcnow
from cdp.exports.destinations import DestinationInfo, list_destinations
from cdp.runtime import Runtime

EXPORT_GRANTS: Final = (
    ("exports", "run", "run an export: decrypt and send the destination's fields"),
    ("exports", "create", "schedule an export (it runs as the principal who scheduled it)"),
)
"""The policy grants by which a role sends personal data out of cdp for a purpose."""

RECIPIENT_CATEGORY: Final = {
    "csv": "file (CSV) for the purpose's tool, e.g. an email tool",
    "jsonl": "file (JSON Lines) for the purpose's tool",
    "webhook": "webhook receiver (a service's HTTP endpoint; its address is not shown)",
    "meta": "ad platform audience (Meta Custom Audience; every value SHA-256 hashed)",
    "google": "ad platform audience (Google Customer Match; hashed, country and zip plain)",
}

TRANSFERS_NOTE: Final = (
    "Transfers to third countries (Art. 30(1)(e)): cdp does not record where a destination's "
    "recipient processes the data, so whether data goes outside the EU is not known to cdp; "
    "record it for each destination listed."
)


def _retention() -> dict[str, str]:
    try:
        from cdp.consent.purposes import PURPOSES as CONFIGURED
    except ImportError:  # the consent module is optional here
        return {}
    return {name: f"{cfg.retention.days} days" for name, cfg in CONFIGURED.items()}


def _recipient(dest: DestinationInfo) -> dict[str, str]:
    return {
        "name": dest.name,
        "kind": dest.kind,
        "category": RECIPIENT_CATEGORY.get(dest.kind, dest.kind),
        "fields": ", ".join(dest.fields),
        "enabled": "yes" if dest.enabled else "no",
    }


def processing(*, runtime: Runtime, clock: Clock = utcnow) -> Report:
    """Records of processing: per purpose, the categories read and the roles allowed to, the
    roles that may export for it, and the destinations (recipients) serving it."""
    now = clock()
    engine = get_policy_engine()
    report = Report(
        "processing",
        "Records of processing",
        now,
        now,
        now,
        {"policy_version": engine.policy_version},
    )
    retention = _retention()
    roles = sorted(engine.roles)
    destinations: dict[str, list[DestinationInfo]] = {}
    for dest in list_destinations(runtime=runtime):
        destinations.setdefault(dest.purpose, []).append(dest)
    for purpose in PURPOSES:
        categories = []
        for category in CATEGORIES:
            allowed = [
                r
                for r in roles
                if engine.decide((r,), resource_for(category), "read", purpose).allowed
            ]
            if allowed:
                categories.append(
                    {
                        "category": category,
                        "fields": ", ".join(fields_in(category)),
                        "roles": ", ".join(allowed),
                    }
                )
        exports: list[dict[str, Any]] = []
        for resource, action, what in EXPORT_GRANTS:
            allowed = [r for r in roles if engine.decide((r,), resource, action, purpose).allowed]
            if allowed:
                grant = f"{resource} {action}"
                exports.append({"grant": grant, "what": what, "roles": ", ".join(allowed)})
        report.processing.append(
            {
                "purpose": purpose,
                "description": PURPOSE_DESCRIPTIONS[purpose],
                "retention": retention.get(purpose, "not configured"),
                "categories": categories,
                "exports": exports,
                "recipients": [_recipient(d) for d in destinations.pop(purpose, [])],
            }
        )
    if not retention:
        report.notes.append("Retention: no purpose configuration found (cdp.consent.purposes).")
    for purpose, dests in sorted(destinations.items()):  # a purpose cdp no longer knows
        names = ", ".join(d.name for d in dests)
        report.notes.append(f"Destinations for purpose {purpose!r}, unknown to cdp: {names}.")
    report.notes.append(TRANSFERS_NOTE)
    return report
