"""The markets of the demo shop: locale, country, currency, time zone and local habits.

Every customer belongs to one market. The market decides the language of the name and address,
the national phone format, the email providers people use, the currency of their orders, the
shopping calendar (11.11 and 6.18 in China, Black Friday and December elsewhere) and which
acquisition channels brought them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Market:
    """One market of the shop (a Faker locale plus everything that follows from it)."""

    locale: str
    country: str
    currency: str
    utc_offset_hours: int
    share: float
    email_domains: tuple[tuple[str, float], ...]
    channels: tuple[tuple[str, float], ...]
    sms_consent_rate: float
    gpc_weight: float


_WEB_CHANNELS: tuple[tuple[str, float], ...] = (
    ("organic_search", 0.26),
    ("paid_search", 0.20),
    ("social", 0.18),
    ("referral", 0.10),
    ("email", 0.08),
    ("marketplace", 0.08),
    ("direct", 0.10),
)

MARKETS: tuple[Market, ...] = (
    Market(
        locale="zh_CN",
        country="CN",
        currency="CNY",
        utc_offset_hours=8,
        share=0.42,
        email_domains=(
            ("qq.com", 0.42),
            ("163.com", 0.24),
            ("126.com", 0.10),
            ("sina.com", 0.06),
            ("foxmail.com", 0.06),
            ("outlook.com", 0.05),
            ("gmail.com", 0.04),
            ("yeah.net", 0.03),
        ),
        channels=(
            ("livestream", 0.24),
            ("social", 0.22),
            ("marketplace", 0.18),
            ("paid_search", 0.10),
            ("organic_search", 0.08),
            ("referral", 0.12),
            ("direct", 0.06),
        ),
        sms_consent_rate=0.42,
        gpc_weight=0.2,
    ),
    Market(
        locale="en_US",
        country="US",
        currency="USD",
        utc_offset_hours=-6,
        share=0.20,
        email_domains=(
            ("gmail.com", 0.52),
            ("yahoo.com", 0.14),
            ("outlook.com", 0.10),
            ("hotmail.com", 0.08),
            ("icloud.com", 0.10),
            ("aol.com", 0.03),
            ("comcast.net", 0.03),
        ),
        channels=_WEB_CHANNELS,
        sms_consent_rate=0.22,
        gpc_weight=4.0,
    ),
    Market(
        locale="en_GB",
        country="GB",
        currency="GBP",
        utc_offset_hours=0,
        share=0.10,
        email_domains=(
            ("gmail.com", 0.45),
            ("hotmail.co.uk", 0.16),
            ("yahoo.co.uk", 0.10),
            ("outlook.com", 0.10),
            ("icloud.com", 0.09),
            ("btinternet.com", 0.06),
            ("sky.com", 0.04),
        ),
        channels=_WEB_CHANNELS,
        sms_consent_rate=0.18,
        gpc_weight=1.0,
    ),
    Market(
        locale="de_DE",
        country="DE",
        currency="EUR",
        utc_offset_hours=1,
        share=0.10,
        email_domains=(
            ("gmx.de", 0.26),
            ("web.de", 0.24),
            ("gmail.com", 0.22),
            ("t-online.de", 0.12),
            ("outlook.de", 0.06),
            ("yahoo.de", 0.05),
            ("posteo.de", 0.05),
        ),
        channels=_WEB_CHANNELS,
        sms_consent_rate=0.12,
        gpc_weight=1.0,
    ),
    Market(
        locale="fr_FR",
        country="FR",
        currency="EUR",
        utc_offset_hours=1,
        share=0.08,
        email_domains=(
            ("gmail.com", 0.36),
            ("orange.fr", 0.18),
            ("hotmail.fr", 0.14),
            ("free.fr", 0.10),
            ("sfr.fr", 0.08),
            ("laposte.net", 0.08),
            ("yahoo.fr", 0.06),
        ),
        channels=_WEB_CHANNELS,
        sms_consent_rate=0.16,
        gpc_weight=1.0,
    ),
    Market(
        locale="ja_JP",
        country="JP",
        currency="JPY",
        utc_offset_hours=9,
        share=0.10,
        email_domains=(
            ("gmail.com", 0.36),
            ("yahoo.co.jp", 0.26),
            ("docomo.ne.jp", 0.12),
            ("icloud.com", 0.12),
            ("ezweb.ne.jp", 0.08),
            ("softbank.ne.jp", 0.06),
        ),
        channels=(
            ("marketplace", 0.24),
            ("organic_search", 0.20),
            ("social", 0.18),
            ("paid_search", 0.16),
            ("referral", 0.10),
            ("direct", 0.12),
        ),
        sms_consent_rate=0.15,
        gpc_weight=0.5,
    ),
)

LOCALES: tuple[str, ...] = tuple(m.locale for m in MARKETS)
CN = LOCALES.index("zh_CN")

CURRENCIES: tuple[str, ...] = ("CNY", "USD", "GBP", "EUR", "JPY")
"""Order currencies; index into this tuple is the currency code used in arrays."""

CURRENCY_OF_MARKET: tuple[int, ...] = tuple(CURRENCIES.index(m.currency) for m in MARKETS)

MINOR_DIGITS: tuple[int, ...] = (2, 2, 2, 2, 0)
"""Decimal places of each currency in `CURRENCIES` (JPY has none)."""

USD_RATE: tuple[float, ...] = (7.1, 1.0, 0.79, 0.92, 150.0)
"""Units of each currency per US dollar, used to price the catalog in every currency."""
