"""Orders that changed after they earned points: reversals and corrections.

A *lot* is what one order earned: its earn line, its adjustments and its reversal, all dated at
the purchase, so expiry (first in, first out) ages them together. Consumption (redemptions and
expiries) is one total per subject, taken from the lots oldest first: what is left of a lot is
``min(lot, max(0, lots up to it - consumed))``.

* **Reversal**: an order that earned points and is no longer completed (refunded, cancelled)
  gets one line taking away what is left of its lot. Points of the lot that expired or were
  redeemed are gone already; taking them again would take the person's newer points. A lot
  with nothing left gets a line of 0, which marks the order as reversed.
* **Correction**: a completed order whose ``value_base`` is no longer the one its lot reflects
  (``value_units`` of its latest earn or adjust line: a partial refund, a corrected total) gets
  an ``adjust`` line bringing the lot to ``floor(value_base * per_currency_unit)`` at the
  configured rate: the whole difference upward; downward at most what is left of the lot, as a
  reversal would (a line of 0 when nothing is left, which records the new value). Adjustments
  of an order are numbered (``correction`` 1, 2, ...), and a new rate in the configuration is no
  correction: only a change of the order's value is.

The earn lines to look at are found in one pass (a join of the earn lines with their orders,
as the reversals alone did before), staged in a temporary table; the usual run finds none. Raising
a lot first: it can leave more of the newer lots (consumption attributed to it), so the
reductions and reversals are computed after, from one state. Taking what is left of one lot
changes no other lot's remainder (a lot with something left comes after everything consumed),
so all of those are computed from the same state, in one ``INSERT ... SELECT``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from cdp.traits.bulk import temp_table
from cdp.traits.config import PointsConfig
from cdp.traits.facts import COMPLETED, money_units
from cdp.traits.points_lines import (
    ADJUST,
    COLUMNS,
    EARN,
    EXPIRE,
    REDEEM,
    REVERSAL,
    earned_points,
    insert_lines,
    ledger_t,
    now_literal,
    orders_t,
)

_COLUMNS = [*COLUMNS, "correction", "value_units"]
CORRECTED, REVERSED = "order_corrected", "order_" + "reversed"


def _changed_lots(cfg: PointsConfig) -> sa.Select[Any]:
    """The earn lines of orders no longer completed and not reversed yet (``target`` null), and
    of completed orders whose value is not the one their lot reflects (``target``: the points
    the value earns now), with the lot's points, the order's value and the next correction's
    number."""
    earn = ledger_t.alias("earn")
    rev = ledger_t.alias("rev")
    adj = ledger_t.alias("adj")
    last = ledger_t.alias("last")
    adjusted = (
        sa.select(
            adj.c.order_id,
            sa.func.sum(adj.c.points).label("points"),
            sa.func.max(adj.c.correction).label("n"),
        )
        .where(adj.c.kind == ADJUST)
        .group_by(adj.c.order_id)
        .subquery("adjusted")
    )
    completed = sa.and_(
        orders_t.c.status == sa.literal_column(f"'{COMPLETED}'"),
        orders_t.c.subject_id.is_not(None),
    )
    units = money_units(orders_t.c.value_base)
    reflected = sa.func.coalesce(last.c.value_units, earn.c.value_units)
    return (
        sa.select(
            earn.c.id,
            earn.c.subject_id,
            earn.c.order_id,
            earn.c.occurred_at,
            (earn.c.points + sa.func.coalesce(adjusted.c.points, 0)).label("lot"),
            sa.case((completed, earned_points(orders_t.c.value_base, cfg.rate))).label("target"),
            sa.case((completed, units)).label("units"),
            (sa.func.coalesce(adjusted.c.n, 0) + 1).label("n"),
        )
        .select_from(
            earn.join(orders_t, orders_t.c.id == earn.c.order_id)
            .outerjoin(adjusted, adjusted.c.order_id == earn.c.order_id)
            .outerjoin(
                last,
                sa.and_(
                    last.c.kind == ADJUST,
                    last.c.order_id == adjusted.c.order_id,
                    last.c.correction == adjusted.c.n,
                ),
            )
        )
        .where(
            earn.c.kind == EARN,
            sa.or_(
                sa.and_(
                    orders_t.c.status != COMPLETED,
                    ~sa.exists().where(rev.c.kind == REVERSAL, rev.c.order_id == earn.c.order_id),
                ),
                sa.and_(completed, units.is_distinct_from(reflected)),
            ),
        )
    )


def settle_changed_orders(
    conn: sa.Connection, *, cfg: PointsConfig, now: datetime
) -> dict[str, int]:
    """Reversal and adjust lines for the orders changed since they earned (module doc);
    returns the lines written, ``reversals`` and ``corrections``."""
    found = _changed_lots(cfg)
    columns = [
        sa.Column(c.name, sa.BigInteger if c.name in ("lot", "target", "units", "n") else c.type)
        for c in found.selected_columns
    ]
    with temp_table(conn, "changed", columns, found, primary_key="id") as todo:

        def count(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
            return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)

        # Each of these gets one line.
        reversals, reductions, raises = conn.execute(
            sa.select(
                count(todo.c.target.is_(None)),
                count(todo.c.target < todo.c.lot),
                count(todo.c.target >= todo.c.lot),
            )
        ).one()
        if raises:
            _raise_lots(conn, todo, now)
        if reversals or reductions:
            _take_from_lots(conn, todo, now)
    return {"corrections": int(raises) + int(reductions), "reversals": int(reversals)}


def _raise_lots(conn: sa.Connection, todo: sa.Table, now: datetime) -> None:
    """The whole difference, for corrections that do not lower the lot (0 for a new value that
    earns as many points)."""
    sel = sa.select(
        todo.c.subject_id,
        sa.literal(ADJUST),
        todo.c.target - todo.c.lot,
        sa.literal(CORRECTED),
        todo.c.order_id,
        sa.null(),
        todo.c.occurred_at,
        now_literal(now),
        todo.c.n,
        todo.c.units,
    ).where(todo.c.target >= todo.c.lot)
    insert_lines(conn, _COLUMNS, sel)


def _take_from_lots(conn: sa.Connection, todo: sa.Table, now: datetime) -> None:
    """Reversals (what is left of the lot) and lowering corrections (the difference, at most
    what is left of the lot), from the lots as they are now."""
    lowering = sa.or_(todo.c.target.is_(None), todo.c.target < todo.c.lot)
    whose = sa.select(todo.c.subject_id).where(lowering)
    # The lots of those subjects with the running total in the order consumption takes them:
    # oldest first, the earlier line first on a tie.
    lot = ledger_t.alias("lot")
    rest = ledger_t.alias("rest")
    changes = (
        sa.select(rest.c.order_id, sa.func.sum(rest.c.points).label("points"))
        .where(rest.c.kind.in_((ADJUST, REVERSAL)), rest.c.subject_id.in_(whose))
        .group_by(rest.c.order_id)
        .subquery("changes")
    )
    size = lot.c.points + sa.func.coalesce(changes.c.points, 0)
    upto = sa.func.sum(size).over(
        partition_by=lot.c.subject_id, order_by=(lot.c.occurred_at, lot.c.id), rows=(None, 0)
    )
    lots = (
        sa.select(lot.c.id, size.label("size"), upto.label("upto"))
        .select_from(lot.outerjoin(changes, changes.c.order_id == lot.c.order_id))
        .where(lot.c.kind == EARN, lot.c.subject_id.in_(whose))
        .subquery("lots")
    )
    # Everything consumed so far (redemptions and expiries), per subject.
    used = (
        sa.select(ledger_t.c.subject_id, (-sa.func.sum(ledger_t.c.points)).label("used"))
        .where(ledger_t.c.kind.in_((REDEEM, EXPIRE)), ledger_t.c.subject_id.in_(whose))
        .group_by(ledger_t.c.subject_id)
        .subquery("used")
    )
    # What consumption left of the lots up to this one, at most this lot's own points.
    left = lots.c.upto - sa.func.coalesce(used.c.used, 0)
    remaining = sa.case((left <= 0, 0), (left >= lots.c.size, lots.c.size), else_=left)
    lower_by = todo.c.lot - todo.c.target
    reversal = todo.c.target.is_(None)
    take = sa.case((reversal, remaining), (lower_by < remaining, lower_by), else_=remaining)
    sel = (
        sa.select(
            todo.c.subject_id,
            sa.case((reversal, sa.literal(REVERSAL)), else_=sa.literal(ADJUST)),
            -take,
            sa.case((reversal, sa.literal(REVERSED)), else_=sa.literal(CORRECTED)),
            todo.c.order_id,
            sa.null(),
            todo.c.occurred_at,
            now_literal(now),
            sa.case((reversal, 0), else_=todo.c.n),
            todo.c.units,
        )
        .select_from(
            todo.join(lots, lots.c.id == todo.c.id).outerjoin(
                used, used.c.subject_id == todo.c.subject_id
            )
        )
        .where(lowering)
    )
    insert_lines(conn, _COLUMNS, sel)
