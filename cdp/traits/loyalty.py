"""Loyalty tiers by spend and purchase occasions over a rolling window, set-based.

Each evaluation (at the injected clock's ``now``) finds the highest tier a subject qualifies
for over the last ``window_days`` (spend and/or occasions, per ``qualify_on``), then applies:

* upgrade at once to the qualifying tier when it is higher;
* downgrade only when the current tier has been held ``retention_days`` or more, and by at most
  ``downgrade_steps`` tiers (never below the qualifying tier);
* otherwise keep the tier (and its ``since``).

Every change (including the first assignment) is written to ``loyalty_tier_changes`` with the
spend and occasions that justified it; ``loyalty_status`` holds the current tier.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import Select

from cdp.db.models import Subject
from cdp.profiles.models import Order
from cdp.traits.config import LoyaltyConfig
from cdp.traits.eligibility import marketing_allowed
from cdp.traits.facts import completed_orders_before
from cdp.traits.models import LoyaltyStatus, LoyaltyTierChange
from cdp.traits.sqlfuncs import date_key

subjects_t = Subject.__table__  # type: ignore[attr-defined]
orders_t = Order.__table__  # type: ignore[attr-defined]
status_t = LoyaltyStatus.__table__  # type: ignore[attr-defined]
changes_t = LoyaltyTierChange.__table__  # type: ignore[attr-defined]


def _qualifying_rank(cfg: LoyaltyConfig, spend: Any, occasions: Any) -> sa.ColumnElement[int]:
    whens = []
    for rank in range(len(cfg.tiers) - 1, 0, -1):
        tier = cfg.tiers[rank]
        spend_ok = spend >= tier.min_spend
        occ_ok = occasions >= tier.min_occasions
        both = sa.and_(spend_ok, occ_ok) if cfg.qualify_on == "both" else sa.or_(spend_ok, occ_ok)
        whens.append((both, sa.literal(rank)))
    if not whens:
        return sa.literal(0)
    return sa.case(*whens, else_=sa.literal(0))


def _tier_name(cfg: LoyaltyConfig, rank: Any) -> sa.ColumnElement[str]:
    return sa.case({i: t.name for i, t in enumerate(cfg.tiers)}, value=rank)


def evaluation(cfg: LoyaltyConfig, now: datetime) -> Select[Any]:
    """Per allowed subject: window spend and occasions, current rank and since, new rank."""
    window = (
        sa.select(
            orders_t.c.subject_id,
            sa.func.sum(orders_t.c.value_base).label("spend"),
            sa.func.count(sa.distinct(date_key(orders_t.c.ordered_at))).label("occasions"),
        )
        .where(
            *completed_orders_before(now),
            orders_t.c.ordered_at >= now - timedelta(days=cfg.window_days),
        )
        .group_by(orders_t.c.subject_id)
        .subquery("window")
    )
    spend = sa.func.coalesce(window.c.spend, 0.0)
    occasions = sa.func.coalesce(window.c.occasions, 0)
    qualified = _qualifying_rank(cfg, spend, occasions)
    current = status_t.c.tier_rank
    may_downgrade = status_t.c.since <= now - timedelta(days=cfg.retention_days)
    floor = current - cfg.downgrade_steps
    new_rank = sa.case(
        (current.is_(None), qualified),
        (qualified > current, qualified),
        (
            sa.and_(qualified < current, may_downgrade),
            sa.case((qualified > floor, qualified), else_=floor),
        ),
        else_=current,
    )
    return (
        sa.select(
            subjects_t.c.id.label("subject_id"),
            spend.label("spend"),
            occasions.label("occasions"),
            current.label("current_rank"),
            status_t.c.tier.label("current_tier"),
            new_rank.label("new_rank"),
        )
        .select_from(
            subjects_t.outerjoin(window, window.c.subject_id == subjects_t.c.id).outerjoin(
                status_t, status_t.c.subject_id == subjects_t.c.id
            )
        )
        .where(marketing_allowed(subjects_t.c.id))
    )


def evaluate_tiers(conn: sa.Connection, *, cfg: LoyaltyConfig, now: datetime) -> int:
    """Apply the tier rules at ``now``; returns the number of tier changes written."""
    conn.execute(sa.delete(status_t).where(~marketing_allowed(status_t.c.subject_id)))
    ev = evaluation(cfg, now).subquery("ev")
    changed = sa.select(
        ev.c.subject_id,
        ev.c.current_tier,
        _tier_name(cfg, ev.c.new_rank),
        ev.c.new_rank,
        sa.literal(now, type_=changes_t.c.changed_at.type),
        ev.c.spend,
        ev.c.occasions,
    ).where(ev.c.new_rank.is_distinct_from(ev.c.current_rank))
    cols = [
        "subject_id",
        "from_tier",
        "to_tier",
        "to_rank",
        "changed_at",
        "window_spend",
        "window_occasions",
    ]
    insert = sa.insert(changes_t).from_select(cols, changed)
    written = conn.execute(insert, execution_options={"preserve_rowcount": True}).rowcount
    # The changes of this run drive the state: new members are inserted, others updated.
    run = changes_t.c.changed_at == now
    conn.execute(
        sa.insert(status_t).from_select(
            ["subject_id", "tier", "tier_rank", "since", "evaluated_at"],
            sa.select(
                changes_t.c.subject_id,
                changes_t.c.to_tier,
                changes_t.c.to_rank,
                changes_t.c.changed_at,
                changes_t.c.changed_at,
            ).where(
                run,
                changes_t.c.from_tier.is_(None),
                ~sa.exists().where(status_t.c.subject_id == changes_t.c.subject_id),
            ),
        )
    )
    upd = (
        sa.select(changes_t.c.subject_id, changes_t.c.to_tier, changes_t.c.to_rank)
        .where(run, changes_t.c.from_tier.is_not(None))
        .subquery("upd")
    )
    conn.execute(
        sa.update(status_t)
        .where(status_t.c.subject_id == upd.c.subject_id)
        .values(tier=upd.c.to_tier, tier_rank=upd.c.to_rank, since=now)
    )
    conn.execute(sa.update(status_t).values(evaluated_at=now))
    return int(written)
