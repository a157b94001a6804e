"""Tables of computed traits, loyalty state, the points ledger and CLV fits.

Every row is keyed by the pseudonymous subject id and holds numbers and labels only: traits
are computed from orders and events without decrypting anything.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy import text as sql_text
from sqlmodel import Field, SQLModel

from cdp.db.types import UtcDateTime
from cdp.profiles.models import Order

_orders = Order.__table__  # type: ignore[attr-defined]
_COMPLETED_ONLY = sql_text("status = 'completed'")

# Traits read completed orders by subject and time with their value: a partial covering index
# makes that one ordered index scan without touching the table (refunds and cancellations
# are not even in it).
ix_orders_completed = Index(
    "ix_orders_completed",
    _orders.c.subject_id,
    _orders.c.ordered_at,
    _orders.c.value_base,
    sqlite_where=_COMPLETED_ONLY,
    postgresql_where=_COMPLETED_ONLY,
)


def _subject_fk() -> Column[str]:
    return Column(String(32), ForeignKey("subjects.id", ondelete="CASCADE"), nullable=False)


# The tables a recompute rewrites wholesale (order traits, tiers) name their subject without a
# foreign key: on PostgreSQL the key's per-row check (a trigger query and a row lock on the
# subject, ~9 µs a row) was the larger part of rewriting a million rows, three times per run.
# Their rows are kept consistent with ``subjects`` by the code that writes and deletes them
# instead (cdp.traits.recompute_lock): a recompute writes only rows of subjects that exist
# when it writes, under a lock that every deletion of a subject also takes (erasure deletes
# these rows through the registry, a merge moves or drops them), and it starts by dropping any
# row whose subject is gone.
def _recomputed_subject_pk() -> Column[str]:
    return Column(String(32), primary_key=True, nullable=False)


def _recomputed_subject() -> Column[str]:
    return Column(String(32), nullable=False)


class SubjectTraits(SQLModel, table=True):
    """Order facts, RFM, lifecycle stage and value layer of one subject (one compute run)."""

    __tablename__ = "subject_traits"

    subject_id: str = Field(sa_column=_recomputed_subject_pk())
    computed_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    orders: int = Field(sa_column=Column(Integer, nullable=False))
    occasions: int = Field(sa_column=Column(Integer, nullable=False))
    first_order_at: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)
    last_order_at: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)
    total_value: float = Field(sa_column=Column(Float, nullable=False))
    avg_order_value: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    repurchase_cycle_days: float | None = Field(
        default=None, sa_column=Column(Float, nullable=True)
    )
    days_since_last_order: int | None = Field(
        default=None, sa_column=Column(Integer, nullable=True)
    )
    recency_score: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    frequency_score: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    monetary_score: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    rfm_segment: str | None = Field(default=None, max_length=32)
    lifecycle_stage: str = Field(max_length=16)
    value_layer: str = Field(max_length=16)
    # Completed orders' value on the first purchase day (the CLV summary's first occasion).
    first_day_value: float | None = Field(default=None, sa_column=Column(Float, nullable=True))


class LoyaltyStatus(SQLModel, table=True):
    """A subject's current loyalty tier and since when it holds it."""

    __tablename__ = "loyalty_status"

    subject_id: str = Field(sa_column=_recomputed_subject_pk())
    tier: str = Field(max_length=32)
    tier_rank: int
    since: datetime = Field(sa_type=UtcDateTime, nullable=False)
    evaluated_at: datetime = Field(sa_type=UtcDateTime, nullable=False)


class LoyaltyTierChange(SQLModel, table=True):
    """One tier change (first assignment, upgrade or downgrade), with what qualified for it."""

    __tablename__ = "loyalty_tier_changes"
    __table_args__ = (Index("ix_loyalty_tier_changes_subject", "subject_id", "changed_at"),)

    id: int | None = Field(default=None, primary_key=True)
    subject_id: str = Field(sa_column=_recomputed_subject())
    from_tier: str | None = Field(default=None, max_length=32)
    to_tier: str = Field(max_length=32)
    to_rank: int
    changed_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    window_spend: float = Field(sa_column=Column(Float, nullable=False))
    window_occasions: int


class PointsEntry(SQLModel, table=True):
    """One line of the points ledger; a subject's balance is the sum of its lines.

    kind: earn (order or event), adjust (an earning order's value was corrected), reversal (an
    earning order was refunded or cancelled), redeem, expire. Earn, adjust and reversal lines
    carry the time of the purchase or event they come from, so that expiry (first in, first
    out) knows their age; ``recorded_at`` is when the line was written."""

    __tablename__ = "points_ledger"
    __table_args__ = (
        # One earn and one reversal line per order; its adjustments are numbered 1, 2, ...
        UniqueConstraint("kind", "order_id", "correction", name="uq_points_kind_order"),
        UniqueConstraint("kind", "event_id", name="uq_points_kind_event"),
        Index("ix_points_subject_time", "subject_id", "occurred_at"),
        # Deleting an order or an event sets its lines' link to null: without these the database
        # scans the whole ledger for each row deleted (the unique keys lead with ``kind``).
        Index("ix_points_order", "order_id"),
        Index("ix_points_event", "event_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    subject_id: str = Field(sa_column=_subject_fk())
    kind: str = Field(max_length=16)
    points: int = Field(sa_column=Column(BigInteger, nullable=False))
    reason: str = Field(max_length=64)
    order_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("orders.id", ondelete="SET NULL"), nullable=True),
    )
    event_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("events.id", ondelete="SET NULL"), nullable=True),
    )
    occurred_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    recorded_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    correction: int = Field(
        default=0,
        sa_column=Column(Integer, nullable=False, server_default=sql_text("0")),
        description="0, or the number of an order's adjustment line (1 for its first).",
    )
    value_units: int | None = Field(
        default=None,
        sa_column=Column(BigInteger, nullable=True),
        description="On an order's earn and adjust lines: the order's value_base, in whole "
        "ten-thousandths, that its points reflect (null on earn lines older than revision "
        "0022p whose order changed after them).",
    )


class ClvFit(SQLModel, table=True):
    """A BG/NBD + Gamma-Gamma fit: its parameters, log-likelihoods and sample sizes."""

    __tablename__ = "clv_fits"

    id: int | None = Field(default=None, primary_key=True)
    fitted_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    calibration_end: datetime = Field(sa_type=UtcDateTime, nullable=False)
    r: float = Field(sa_column=Column(Float, nullable=False))
    alpha: float = Field(sa_column=Column(Float, nullable=False))
    a: float = Field(sa_column=Column(Float, nullable=False))
    b: float = Field(sa_column=Column(Float, nullable=False))
    bgnbd_log_likelihood: float = Field(sa_column=Column(Float, nullable=False))
    bgnbd_converged: bool = Field(sa_column=Column(Boolean, nullable=False))
    n_customers: int
    p: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    q: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    gamma: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    gg_log_likelihood: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    gg_converged: bool | None = Field(default=None, sa_column=Column(Boolean, nullable=True))
    n_repeat_customers: int


class ClvPrediction(SQLModel, table=True):
    """CLV and churn traits of one subject from the latest fit."""

    __tablename__ = "clv_predictions"

    subject_id: str = Field(sa_column=_recomputed_subject_pk())
    fit_id: int = Field(
        sa_column=Column(Integer, ForeignKey("clv_fits.id", ondelete="CASCADE"), nullable=False)
    )
    computed_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    horizon_weeks: float = Field(sa_column=Column(Float, nullable=False))
    expected_purchases: float = Field(sa_column=Column(Float, nullable=False))
    p_alive: float = Field(sa_column=Column(Float, nullable=False))
    churn_probability: float = Field(sa_column=Column(Float, nullable=False))
    churn_flag: bool = Field(sa_column=Column(Boolean, nullable=False))
    clv: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    clv_quantile: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
