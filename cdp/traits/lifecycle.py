"""Lifecycle stage and value layer, as SQL CASE expressions over the order facts.

Stages (first match wins; days counted in UTC calendar days up to the computation day):
prospect (no completed order), new (first order at most ``new_days`` ago), reactivated (last
order within ``active_days`` after a gap longer than ``reactivation_gap_days``), active (last
order within ``active_days``), at_risk (within ``at_risk_days``), dormant (within
``dormant_days``), churned (longer ago).

Value layers: potential (no completed order yet), then buyers by their rank on total value:
high (top ``high_percent``), medium (the next ``medium_percent``), low (the rest) — ranked
with the same tie rule as RFM, so equal totals share a layer.
"""

from __future__ import annotations

from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from cdp.traits.config import LifecycleConfig, ValueLayerConfig

STAGES: Final = ("prospect", "new", "reactivated", "active", "at_risk", "dormant", "churned")
LAYERS: Final = ("high", "medium", "low", "potential")


def lifecycle_stage(
    cfg: LifecycleConfig,
    *,
    first_age_days: ColumnElement[Any],
    days_since_last: ColumnElement[Any],
    last_gap_days: ColumnElement[Any],
) -> ColumnElement[str]:
    """The stage of a subject (NULL facts mean no completed order)."""
    return sa.case(
        (days_since_last.is_(None), sa.literal("prospect")),
        (first_age_days <= cfg.new_days, sa.literal("new")),
        (
            sa.and_(
                days_since_last <= cfg.active_days,
                sa.func.coalesce(last_gap_days, 0) > cfg.reactivation_gap_days,
            ),
            sa.literal("reactivated"),
        ),
        (days_since_last <= cfg.active_days, sa.literal("active")),
        (days_since_last <= cfg.at_risk_days, sa.literal("at_risk")),
        (days_since_last <= cfg.dormant_days, sa.literal("dormant")),
        else_=sa.literal("churned"),
    )


def value_layer(
    cfg: ValueLayerConfig, *, lower: ColumnElement[Any], buyers: ColumnElement[Any]
) -> ColumnElement[str]:
    """``lower`` = buyers with a strictly lower total; NULL for non-buyers (potential)."""
    high_from = 100 - cfg.high_percent
    medium_from = high_from - cfg.medium_percent
    return sa.case(
        (lower.is_(None), sa.literal("potential")),
        (lower * 100 >= buyers * high_from, sa.literal("high")),
        (lower * 100 >= buyers * medium_from, sa.literal("medium")),
        else_=sa.literal("low"),
    )


def python_stage(
    cfg: LifecycleConfig,
    *,
    first_age_days: int | None,
    days_since_last: int | None,
    last_gap_days: int | None,
) -> str:
    """The same stage in Python (reference for tests)."""
    if days_since_last is None or first_age_days is None:
        return "prospect"
    if first_age_days <= cfg.new_days:
        return "new"
    if days_since_last <= cfg.active_days and (last_gap_days or 0) > cfg.reactivation_gap_days:
        return "reactivated"
    if days_since_last <= cfg.active_days:
        return "active"
    if days_since_last <= cfg.at_risk_days:
        return "at_risk"
    if days_since_last <= cfg.dormant_days:
        return "dormant"
    return "churned"
