"""Facts, RFM, lifecycle and value layer of every subject, in one INSERT ... SELECT.

The whole computation is one statement: per-day purchases (window lag/lead for gaps), per
subject facts, RFM ranks over the buyers, then the CASE rules, joined to every subject so that
non-buyers are stored as prospects. Nothing is read into Python.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import Select

from cdp.db.models import Subject
from cdp.traits.config import TraitsConfig
from cdp.traits.eligibility import marketing_allowed
from cdp.traits.facts import subject_facts
from cdp.traits.lifecycle import lifecycle_stage, value_layer
from cdp.traits.models import SubjectTraits
from cdp.traits.rfm import fm_score, monetary_key, quintile_score, segment_name
from cdp.traits.sqlfuncs import python_day

subjects_t = Subject.__table__  # type: ignore[attr-defined]
traits_t = SubjectTraits.__table__  # type: ignore[attr-defined]

COLUMNS = (
    "subject_id",
    "computed_at",
    "orders",
    "occasions",
    "first_order_at",
    "last_order_at",
    "total_value",
    "avg_order_value",
    "repurchase_cycle_days",
    "days_since_last_order",
    "recency_score",
    "frequency_score",
    "monetary_score",
    "rfm_segment",
    "lifecycle_stage",
    "value_layer",
)


def order_traits_select(cfg: TraitsConfig, now: datetime) -> Select[Any]:
    """One row per allowed subject, in :data:`COLUMNS` order, as of ``now``."""
    today = python_day(now)
    facts = subject_facts(now).subquery("facts")
    buyers = sa.func.count().over()
    m_key = monetary_key(facts.c.total_value)
    scored = sa.select(
        facts,
        quintile_score(facts.c.last_day, buyers).label("r"),
        quintile_score(facts.c.occasions, buyers).label("f"),
        quintile_score(m_key, buyers).label("m"),
        (sa.func.rank().over(order_by=m_key) - 1).label("m_lower"),
        buyers.label("buyers"),
    ).subquery("scored")
    s = subjects_t
    days_since = sa.literal(today) - scored.c.last_day
    cycle = sa.case(
        (
            scored.c.occasions > 1,
            sa.cast(scored.c.last_day - scored.c.first_day, sa.Float) / (scored.c.occasions - 1),
        ),
        else_=sa.null(),
    )
    return (
        sa.select(
            s.c.id,
            sa.literal(now, type_=traits_t.c.computed_at.type),
            sa.func.coalesce(scored.c.orders, 0),
            sa.func.coalesce(scored.c.occasions, 0),
            scored.c.first_order_at,
            scored.c.last_order_at,
            sa.func.coalesce(scored.c.total_value, 0.0),
            sa.cast(scored.c.total_value, sa.Float) / scored.c.orders,
            cycle,
            days_since,
            scored.c.r,
            scored.c.f,
            scored.c.m,
            segment_name(scored.c.r, fm_score(scored.c.f, scored.c.m)),
            lifecycle_stage(
                cfg.lifecycle,
                first_age_days=sa.literal(today) - scored.c.first_day,
                days_since_last=days_since,
                last_gap_days=scored.c.last_gap_days,
            ),
            value_layer(cfg.value_layers, lower=scored.c.m_lower, buyers=scored.c.buyers),
        )
        .select_from(s.outerjoin(scored, scored.c.subject_id == s.c.id))
        .where(marketing_allowed(s.c.id))
    )


def compute_order_traits(conn: sa.Connection, *, cfg: TraitsConfig, now: datetime) -> int:
    """Replace every subject's order traits (one DELETE, one INSERT ... SELECT)."""
    conn.execute(sa.delete(traits_t))
    conn.execute(sa.insert(traits_t).from_select(list(COLUMNS), order_traits_select(cfg, now)))
    return int(conn.execute(sa.select(sa.func.count()).select_from(traits_t)).scalar_one())
