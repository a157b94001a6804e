"""Business rules of the traits, in one validated object.

Defaults suit a typical shop; a shop changes them in a TOML file named by ``CDP_TRAITS_CONFIG``
(sections ``[lifecycle]``, ``[value_layers]``, ``[loyalty]``, ``[points]``, ``[clv]``,
``[segments]``). docs/traits.md lists every field.
"""

from __future__ import annotations

import tomllib
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from cdp.errors import ConfigurationError
from cdp.ingest.money import VALUE_BASE_PLACES
from cdp.settings import Settings


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LifecycleConfig(_Section):
    """Day windows of the lifecycle stages, measured from the last (or first) completed order."""

    new_days: int = Field(30, ge=1, description="First order at most this many days ago: new.")
    active_days: int = Field(90, ge=1, description="Last order within this: active.")
    at_risk_days: int = Field(180, ge=1, description="Last order within this: at risk.")
    dormant_days: int = Field(365, ge=1, description="Within this: dormant; beyond: churned.")
    reactivation_gap_days: int = Field(
        180, ge=1, description="Active again after a gap longer than this: reactivated."
    )

    @model_validator(mode="after")
    def _ordered(self) -> LifecycleConfig:
        if not (self.active_days < self.at_risk_days < self.dormant_days):
            raise ValueError("need active_days < at_risk_days < dormant_days")
        return self


class ValueLayerConfig(_Section):
    """Shares of buyers (by total spend) in the high and medium layers, in percent."""

    high_percent: int = Field(20, ge=1, le=99)
    medium_percent: int = Field(30, ge=1, le=98)

    @model_validator(mode="after")
    def _fits(self) -> ValueLayerConfig:
        if self.high_percent + self.medium_percent >= 100:
            raise ValueError("high_percent + medium_percent must be below 100")
        return self


class Tier(_Section):
    """A loyalty tier and what qualifies for it over the rolling window."""

    name: str = Field(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$")
    min_spend: float = Field(0.0, ge=0)
    min_occasions: int = Field(0, ge=0)


class LoyaltyConfig(_Section):
    """Tiers (lowest first), the rolling window, and the upgrade/downgrade rules."""

    tiers: tuple[Tier, ...] = (
        Tier(name="member"),
        Tier(name="silver", min_spend=300, min_occasions=3),
        Tier(name="gold", min_spend=1000, min_occasions=6),
        Tier(name="platinum", min_spend=3000, min_occasions=12),
    )
    window_days: int = Field(365, ge=1, description="Spend and occasions count over this window.")
    qualify_on: str = Field(
        "either", pattern="^(either|both)$", description="Spend or occasions, or both."
    )
    retention_days: int = Field(
        365, ge=0, description="A tier is kept at least this long before any downgrade."
    )
    downgrade_steps: int = Field(1, ge=1, description="Tiers lost at most per evaluation.")

    @model_validator(mode="after")
    def _tiers(self) -> LoyaltyConfig:
        if not self.tiers:
            raise ValueError("at least one tier is needed")
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError("tier names must be unique")
        return self

    @property
    def top_tier(self) -> str:
        return self.tiers[-1].name


class PointsConfig(_Section):
    """The points ledger: what earns points, and when they expire."""

    per_currency_unit: float = Field(1.0, ge=0, description="Points per unit of order value.")
    events: dict[str, int] = Field(
        default_factory=lambda: {"Checked In": 5, "Product Reviewed": 20},
        description="Points per behaviour event, by event name.",
    )
    expiry_months: int = Field(12, ge=1, description="Points expire this many months after.")

    @property
    def rate(self) -> Fraction:
        """``per_currency_unit`` as the exact fraction of the decimal as written (0.1 is 1/10,
        not the binary float nearest it)."""
        return _decimal_fraction(self.per_currency_unit)

    @field_validator("per_currency_unit")
    @classmethod
    def _exactly_computable(cls, value: float) -> float:
        # Points are floor(value in ten-thousandths * numerator / (denominator * 10^4)) in
        # 64-bit integers (cdp.traits.points.earned_points): the rate's digits must fit.
        f = _decimal_fraction(value)
        if f.numerator * f.denominator * 10**VALUE_BASE_PLACES > 2**62:
            raise ValueError(
                "too many significant digits to compute points exactly (use fewer decimals)"
            )
        return value


def _decimal_fraction(value: float) -> Fraction:
    """The exact fraction of the shortest decimal that reads back as ``value``."""
    return Fraction(Decimal(repr(value)))


class ClvConfig(_Section):
    """CLV prediction settings."""

    horizon_weeks: float = Field(52.0, gt=0, le=520)
    annual_discount_rate: float = Field(0.10, gt=-1)
    churn_threshold: float = Field(
        0.5, gt=0, lt=1, description="Churn flag when 1 - P(alive) is at least this."
    )


class SegmentsConfig(_Section):
    """Segment engine limits."""

    keep_snapshots: int = Field(20, ge=2, description="Snapshots kept per segment.")
    max_page_size: int = Field(1000, ge=1, le=10_000)


class TraitsConfig(_Section):
    lifecycle: LifecycleConfig = LifecycleConfig()
    value_layers: ValueLayerConfig = ValueLayerConfig()
    loyalty: LoyaltyConfig = LoyaltyConfig()
    points: PointsConfig = PointsConfig()
    clv: ClvConfig = ClvConfig()
    segments: SegmentsConfig = SegmentsConfig()


def load_traits_config(settings: Settings) -> TraitsConfig:
    """The configured rules (defaults when ``CDP_TRAITS_CONFIG`` is unset)."""
    path: Path | None = settings.traits_config
    if path is None:
        return TraitsConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"traits config cannot be read: {type(exc).__name__}") from exc
    try:
        return TraitsConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigurationError(f"traits config: {where}: {first['msg']}") from exc
