"""Loyalty tiers by spend and purchase occasions over a rolling window, set-based.

Each evaluation (at the injected clock's ``now``) finds the highest tier a subject qualifies
for over the last ``window_days`` (spend and/or occasions, per ``qualify_on``), then applies:

* upgrade at once to the qualifying tier when it is higher;
* downgrade only when the current tier has been held ``retention_days`` or more, and by at most
  ``downgrade_steps`` tiers (never below the qualifying tier);
* otherwise keep the tier (and its ``since``).

Every change (including the first assignment) is written to ``loyalty_tier_changes`` with the
spend and occasions that justified it; ``loyalty_status`` holds the current tier.

Set-based, in one pass over the orders: the window's spend and occasions per subject are
aggregated from the partial covering index of completed orders (streamed in subject order, no
sort) into a temporary table keyed by subject; the subjects whose tier changes are staged in a
second one, from which the change log, the new members and the updated members are written.
The change log (a growing history) is only appended to, never scanned.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import Select

from cdp.db.models import Subject
from cdp.profiles.models import Order
from cdp.traits.bulk import bulk_session, temp_table
from cdp.traits.config import LoyaltyConfig
from cdp.traits.eligibility import marketing_allowed
from cdp.traits.facts import (
    MONEY_SCALE,
    completed_orders_before,
    day_rows,
    money_units,
    new_day,
    units_to_money,
)
from cdp.traits.models import LoyaltyStatus, LoyaltyTierChange
from cdp.traits.recompute_lock import step_lock, subject_exists
from cdp.traits.sqlfuncs import date_key, no_index

subjects_t = Subject.__table__  # type: ignore[attr-defined]
orders_t = Order.__table__  # type: ignore[attr-defined]
status_t = LoyaltyStatus.__table__  # type: ignore[attr-defined]
changes_t = LoyaltyTierChange.__table__  # type: ignore[attr-defined]


def threshold_units(min_spend: float) -> int:
    """The spend threshold in the ten-thousandths the window's spend is summed in: the least
    whole number of them at or above the configured decimal (as written: ``300`` or
    ``299.99``), so comparing the integer sum with it is exact."""
    exact = Decimal(str(min_spend)) * MONEY_SCALE
    return int(exact.to_integral_value(rounding=ROUND_CEILING))


def _qualifying_rank(cfg: LoyaltyConfig, spend_units: Any, occasions: Any) -> sa.ColumnElement[int]:
    whens = []
    for rank in range(len(cfg.tiers) - 1, 0, -1):
        tier = cfg.tiers[rank]
        spend_ok = spend_units >= sa.literal_column(str(threshold_units(tier.min_spend)))
        occ_ok = occasions >= tier.min_occasions
        both = sa.and_(spend_ok, occ_ok) if cfg.qualify_on == "both" else sa.or_(spend_ok, occ_ok)
        whens.append((both, sa.literal(rank)))
    if not whens:
        return sa.literal(0)
    return sa.case(*whens, else_=sa.literal(0))


def _tier_name(cfg: LoyaltyConfig, rank: Any) -> sa.ColumnElement[str]:
    return sa.case({i: t.name for i, t in enumerate(cfg.tiers)}, value=rank)


def _rank_of(cfg: LoyaltyConfig, tier: Any, **missing: Any) -> sa.ColumnElement[int]:
    """The place of the tier named ``tier`` in the configuration (``else_``: what a name the
    configuration does not have gives; NULL by default)."""
    return sa.case({t.name: i for i, t in enumerate(cfg.tiers)}, value=tier, **missing)


def window_facts(cfg: LoyaltyConfig, now: datetime, dialect: str = "sqlite") -> Select[Any]:
    """Per subject with a completed order in the window: spend (an exact integer of
    ten-thousandths, :func:`cdp.traits.facts.money_units`) and purchase occasions (on
    PostgreSQL counted from day marks, as in :func:`cdp.traits.facts.subject_facts`)."""
    since = now - timedelta(days=cfg.window_days)
    if dialect == "postgresql":
        rows = day_rows(now, orders_t.c.ordered_at >= since)
        return sa.select(
            rows.c.subject_id,
            sa.func.sum(money_units(rows.c.value_base)).label("spend_units"),
            sa.func.count().filter(new_day(rows)).label("occasions"),
        ).group_by(rows.c.subject_id)
    return (
        sa.select(
            orders_t.c.subject_id,
            sa.func.sum(money_units(orders_t.c.value_base)).label("spend_units"),
            sa.func.count(sa.distinct(date_key(orders_t.c.ordered_at))).label("occasions"),
        )
        .where(
            # SQLite would pick the ordered_at index for the window (a lookup per order and
            # a sort for the GROUP BY); the covering index streams the groups in subject order.
            *completed_orders_before(now, no_index(orders_t.c.ordered_at)),
            no_index(orders_t.c.ordered_at) >= since,
        )
        .group_by(orders_t.c.subject_id)
    )


def _window_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("subject_id", sa.String(32)),
        sa.Column("spend_units", sa.BigInteger),
        sa.Column("occasions", sa.Integer),
    ]


def evaluation(cfg: LoyaltyConfig, now: datetime, window: sa.FromClause) -> Select[Any]:
    """Per allowed subject: window spend and occasions (from ``window``, rows of
    :func:`window_facts`), whether it holds a tier, current rank and tier, new rank.

    The current rank is the place of the held tier's *name* in the configuration, not the rank
    stored with it: after a change of ``CDP_TRAITS_CONFIG`` the stored rank may point at another
    tier (one removed or added below it). A held tier the configuration no longer has (renamed
    or removed) has no current rank: the subject gets the qualifying tier, as a first
    assignment, so no subject keeps a tier name that is not configured."""
    spend_units = sa.func.coalesce(window.c.spend_units, 0)
    occasions = sa.func.coalesce(window.c.occasions, 0)
    qualified = _qualifying_rank(cfg, spend_units, occasions)
    current = _rank_of(cfg, status_t.c.tier)
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
            units_to_money(spend_units).label("spend"),
            occasions.label("occasions"),
            status_t.c.subject_id.is_not(None).label("held"),
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


def _staged_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("subject_id", sa.String(32)),
        sa.Column("spend", sa.Float),
        sa.Column("occasions", sa.Integer),
        sa.Column("held", sa.Boolean),
        sa.Column("current_rank", sa.Integer),
        sa.Column("current_tier", sa.String(32)),
        sa.Column("new_rank", sa.Integer),
    ]


def evaluate_tiers(conn: sa.Connection, *, cfg: LoyaltyConfig, now: datetime) -> int:
    """Apply the tier rules at ``now``; returns the number of tier changes written. The whole
    evaluation runs under the step's lock (:mod:`cdp.traits.recompute_lock`), taken before the
    orders are read."""
    with (
        bulk_session(conn),
        step_lock(conn, status_t, changes_t),
        temp_table(
            conn,
            "tier_window",
            _window_columns(),
            window_facts(cfg, now, conn.dialect.name),
            primary_key="subject_id",
        ) as window,
    ):
        ev = evaluation(cfg, now, window).subquery("ev")
        changed = sa.select(*ev.c).where(ev.c.new_rank.is_distinct_from(ev.c.current_rank))
        with temp_table(conn, "tier_changes", _staged_columns(), changed) as staged:
            # Restricted subjects lose their tier (the evaluation left them out).
            conn.execute(sa.delete(status_t).where(~marketing_allowed(status_t.c.subject_id)))
            written = _apply(conn, cfg=cfg, now=now, staged=staged)
            # New and changed members were stamped above; stamp the others (skipping rows
            # that already carry ``now`` saves PostgreSQL a rewrite of every new member's
            # row), and give a tier kept by name its place in the configuration (moved when
            # a tier below it was added or removed).
            place = _rank_of(cfg, status_t.c.tier, else_=status_t.c.tier_rank)
            conn.execute(
                sa.update(status_t)
                .where(
                    sa.or_(
                        status_t.c.evaluated_at.is_distinct_from(now),
                        status_t.c.tier_rank != place,
                    )
                )
                .values(evaluated_at=now, tier_rank=place)
            )
    return written


def _apply(conn: sa.Connection, *, cfg: LoyaltyConfig, now: datetime, staged: sa.Table) -> int:
    """Write the staged changes: the change log, new members, then changed members."""
    new_tier = _tier_name(cfg, staged.c.new_rank)
    stamp = sa.literal(now, type_=changes_t.c.changed_at.type)
    log = sa.select(
        staged.c.subject_id,
        staged.c.current_tier,
        new_tier,
        staged.c.new_rank,
        stamp,
        staged.c.spend,
        staged.c.occasions,
    ).where(subject_exists(staged.c.subject_id))
    cols = [
        "subject_id",
        "from_tier",
        "to_tier",
        "to_rank",
        "changed_at",
        "window_spend",
        "window_occasions",
    ]
    insert = sa.insert(changes_t).from_select(cols, log)
    written = conn.execute(insert, execution_options={"preserve_rowcount": True}).rowcount
    # No status row yet: a new member.
    conn.execute(
        sa.insert(status_t).from_select(
            ["subject_id", "tier", "tier_rank", "since", "evaluated_at"],
            sa.select(staged.c.subject_id, new_tier, staged.c.new_rank, stamp, stamp).where(
                ~staged.c.held, subject_exists(staged.c.subject_id)
            ),
        )
    )
    upd = (
        sa.select(staged.c.subject_id, new_tier.label("to_tier"), staged.c.new_rank)
        .where(staged.c.held)
        .subquery("upd")
    )
    conn.execute(
        sa.update(status_t)
        .where(status_t.c.subject_id == upd.c.subject_id)
        .values(tier=upd.c.to_tier, tier_rank=upd.c.new_rank, since=now, evaluated_at=now)
    )
    return int(written)
