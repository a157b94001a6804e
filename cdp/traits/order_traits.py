"""Facts, RFM, lifecycle and value layer of every subject, set-based.

Buyers come from one INSERT ... SELECT (per-subject facts, RFM ranks over the buyers, then the
CASE rules); the remaining subjects are inserted as prospects by a second one. Nothing is read
into Python. (Joining every subject to the ranked buyers in one statement made SQLite scan the
ranked rows once per subject.)
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


def _prospects(now: datetime) -> Select[Any]:
    """Subjects without a completed order (and not restricted), not yet inserted."""
    s = subjects_t
    done = sa.exists().where(traits_t.c.subject_id == s.c.id)
    return sa.select(
        s.c.id,
        sa.literal(now, type_=traits_t.c.computed_at.type),
        sa.literal(0),
        sa.literal(0),
        sa.null(),
        sa.null(),
        sa.literal(0.0),
        sa.null(),
        sa.null(),
        sa.null(),
        sa.null(),
        sa.null(),
        sa.null(),
        sa.null(),
        sa.literal("prospect"),
        sa.literal("potential"),
    ).where(~done, marketing_allowed(s.c.id))


def order_traits_select(cfg: TraitsConfig, now: datetime) -> Select[Any]:
    """One row per allowed buyer, in :data:`COLUMNS` order, as of ``now``. Restricted subjects
    are left out before ranking, so they do not shift anyone's quintile."""
    today = python_day(now)
    facts = subject_facts(now, last_gap=True).subquery("facts")
    allowed = sa.select(facts).where(marketing_allowed(facts.c.subject_id)).subquery("allowed")
    buyers = sa.func.count().over()
    m_key = monetary_key(allowed.c.total_value)
    scored = sa.select(
        allowed,
        quintile_score(allowed.c.last_day, buyers).label("r"),
        quintile_score(allowed.c.occasions, buyers).label("f"),
        quintile_score(m_key, buyers).label("m"),
        (sa.func.rank().over(order_by=m_key) - 1).label("m_lower"),
        buyers.label("buyers"),
    ).subquery("scored")
    days_since = sa.literal(today) - scored.c.last_day
    cycle = sa.case(
        (
            scored.c.occasions > 1,
            sa.cast(scored.c.last_day - scored.c.first_day, sa.Float) / (scored.c.occasions - 1),
        ),
        else_=sa.null(),
    )
    return sa.select(
        scored.c.subject_id,
        sa.literal(now, type_=traits_t.c.computed_at.type),
        scored.c.orders,
        scored.c.occasions,
        scored.c.first_order_at,
        scored.c.last_order_at,
        scored.c.total_value,
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


def compute_order_traits(conn: sa.Connection, *, cfg: TraitsConfig, now: datetime) -> int:
    """Replace every subject's order traits: one DELETE and two INSERT ... SELECT (buyers,
    then the prospects among the remaining subjects)."""
    conn.execute(sa.delete(traits_t))
    conn.execute(sa.insert(traits_t).from_select(list(COLUMNS), order_traits_select(cfg, now)))
    conn.execute(sa.insert(traits_t).from_select(list(COLUMNS), _prospects(now)))
    return int(conn.execute(sa.select(sa.func.count()).select_from(traits_t)).scalar_one())
