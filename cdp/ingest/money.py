"""Money: decimal strings to integer minor units, and the reporting-currency value for analytics.

Amounts arrive as decimal strings (or numbers) in major units. They are stored as integers in the
currency's minor unit (ISO 4217 exponent: cents for USD, fen for CNY, none for JPY), so sums are
exact; ``value_base`` (a float, major units of ``settings.base_currency``) is what RFM and CLV
aggregate.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from cdp.errors import ConfigurationError

VALUE_BASE_PLACES = 4
"""Decimal places ``value_base`` keeps (:meth:`Converter.value_base` rounds to them): analytics
sum it exactly as whole ten-thousandths (:func:`cdp.traits.facts.money_sum`)."""

#: ISO 4217 minor-unit exponents of the currencies cdp knows (others default to 2).
EXPONENTS: Mapping[str, int] = {
    "CNY": 2,
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "JPY": 0,
    "KRW": 0,
    "HKD": 2,
    "TWD": 2,
    "SGD": 2,
    "AUD": 2,
    "CAD": 2,
    "CHF": 2,
    "KWD": 3,
    "BHD": 3,
}


def exponent(currency: str) -> int:
    """How many decimal places the currency's minor unit has."""
    return EXPONENTS.get(currency, 2)


def whole_minor_units(amount: Decimal, currency: str) -> bool:
    """Whether ``amount`` (major units) is a whole number of the currency's minor units (JPY
    10.5 or USD 10.555 are not: storing them would round)."""
    scaled = amount.scaleb(exponent(currency))
    return scaled == scaled.to_integral_value()


def finer_than_minor_unit(currency: str) -> str:
    """The reason an amount that is not a whole number of minor units is refused."""
    places = exponent(currency)
    return (
        f"finer than the minor unit of {currency} ({places} decimal place"
        f"{'' if places == 1 else 's'}); amounts are stored in whole minor units, not rounded"
    )


def to_minor(amount: Decimal, currency: str) -> int:
    """``amount`` (major units) as an integer count of minor units. The records refuse an
    amount that is not a whole number of them (:func:`whole_minor_units`), so nothing rounds
    here: such an amount is a ``ValueError``."""
    try:
        scaled = amount.scaleb(exponent(currency))
        minor = scaled.to_integral_value(rounding=ROUND_HALF_EVEN)
    except InvalidOperation as exc:  # pragma: no cover - guarded by the record bounds
        raise ValueError("amount out of range") from exc
    if minor != scaled:
        raise ValueError(finer_than_minor_unit(currency))
    return int(minor)


class Converter:
    """Converts minor units of any known currency to major units of the reporting currency."""

    def __init__(self, rates: Mapping[str, float], base: str) -> None:
        if base not in rates:
            raise ConfigurationError("CDP_BASE_CURRENCY must be one of the CDP_FX_RATES currencies")
        self.base = base
        self.currencies = frozenset(rates)
        self._factor = {c: r / rates[base] / (10 ** exponent(c)) for c, r in rates.items()}

    def __repr__(self) -> str:
        return f"Converter(base={self.base!r}, currencies={sorted(self.currencies)})"

    def value_base(self, minor: int, currency: str) -> float:
        """The amount in major units of the base currency (rounded to 4 decimals)."""
        return round(float(minor * self._factor[currency]), VALUE_BASE_PLACES)
