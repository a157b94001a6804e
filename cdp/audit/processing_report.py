"""The ``processing`` report: records of processing, from the policy in force and the consent
configuration."""

from __future__ import annotations

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
from cdp.runtime import Runtime


def _retention() -> dict[str, str]:
    try:
        from cdp.consent.purposes import PURPOSES as CONFIGURED
    except ImportError:  # the consent module is optional here
        return {}
    return {name: f"{cfg.retention.days} days" for name, cfg in CONFIGURED.items()}


def processing(*, runtime: Runtime, clock: Clock = utcnow) -> Report:
    """Records of processing: per purpose, the categories read and the roles allowed to."""
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
        report.processing.append(
            {
                "purpose": purpose,
                "description": PURPOSE_DESCRIPTIONS[purpose],
                "retention": retention.get(purpose, "not configured"),
                "categories": categories,
            }
        )
    if not retention:
        report.notes.append("Retention: no purpose configuration found (cdp.consent.purposes).")
    return report
