"""Who the customers are and how often each of them buys.

Everything per customer is drawn up front as numpy columns (about 70 bytes a customer); orders,
events and consent rows are generated later, a chunk of customers at a time, from these columns.

Purchasing follows the BG/NBD story, on each market's operational clock (see `timeline`):

* about 80% of customers buy, the first time shortly after signing up;
* while alive, a buyer repeats as a Poisson process with a gamma-distributed rate ``lambda``;
* after every repeat purchase the buyer drops out with a beta-distributed probability ``p``.

Given ``lambda``, ``p`` and the remaining window ``w``, the number of repeats is
``min(K, N)`` with ``K ~ Geometric(p)`` and ``N ~ Poisson(lambda * w)``; its expectation is
``(1 - exp(-lambda * w * p)) / p``, which lets the rates be scaled so that the expected total
matches the requested order count. The small remaining difference is then spread over (or
taken from) repeat buyers so that the total is exact.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date

import numpy as np
from numpy.typing import NDArray

from cdp.demo.catalog import CATEGORIES
from cdp.demo.contact import QQ_STYLE
from cdp.demo.locales import CN, MARKETS
from cdp.demo.people import NAME_POOL
from cdp.demo.timeline import DAY, Timeline

BUYER_RATE = 0.8
SHARED_EMAIL_RATE = 0.005
LAMBDA_SHAPE = 0.3
DROPOUT_A = 2.0
MAX_REPEATS = 150
"""Cap on one customer's simulated repeats, before the total is matched (keeps whales sane)."""
GENDERS = ("female", "male", "other", "")

I8 = NDArray[np.int8]
I16 = NDArray[np.int16]
I32 = NDArray[np.int32]
I64 = NDArray[np.int64]
F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
Bools = NDArray[np.bool_]


@dataclass(slots=True)
class Population:
    """One row per customer, in customer-id order (which is sign-up order)."""

    market: I8
    signup: I64
    root: I32
    """Index of the customer whose email address this one uses (itself unless shared)."""
    gender: I8
    sex: I8
    """Name pool: 0 female, 1 male (customers of other or unknown gender still have a name)."""
    first: I16
    last: I16
    email_style: I8
    email_domain: I8
    birthday: I32
    """Proleptic Gregorian ordinal, 0 when not given."""
    loyalty: Bools
    channel: I8
    first_order: I64
    """Epoch seconds of the first order, -1 for customers who never buy."""
    repeats: I32
    clock_first: F64
    clock_stop: F64
    """End of the repeat window on the operational clock."""
    stopped: Bools
    """True if the customer dropped out: the last repeat happens exactly at `clock_stop`."""
    taste: F32
    favourite: I8
    basket: F32
    events: I32

    @property
    def size(self) -> int:
        """Number of customers."""
        return len(self.market)

    def slice(self, lo: int, hi: int) -> Population:
        """The customers [lo, hi) as a view."""
        return Population(*(getattr(self, f.name)[lo:hi] for f in fields(self)))


def build_population(
    rng: np.random.Generator, timeline: Timeline, customers: int, orders: int, events: int
) -> Population:
    """Draw every customer's traits and calibrated purchase counts."""
    n = customers
    shares = np.array([m.share for m in MARKETS])
    market = rng.choice(len(MARKETS), size=n, p=shares / shares.sum()).astype(np.int8)
    signup = _signups(rng, timeline, market)
    order = np.argsort(signup, kind="stable")
    market, signup = market[order], signup[order]
    root = _shared_emails(rng, n)
    market = market[root]

    gender = rng.choice(4, size=n, p=[0.49, 0.44, 0.015, 0.055]).astype(np.int8)
    sex = np.where(gender < 2, gender, rng.integers(0, 2, n)).astype(np.int8)
    first = rng.integers(0, NAME_POOL, n).astype(np.int16)
    last = rng.integers(0, NAME_POOL, n).astype(np.int16)
    gender, sex, first, last = gender[root], sex[root], first[root], last[root]
    style, domain, channel = _market_choices(rng, market)
    birthday = _birthdays(rng, signup, root)

    first_order, buyers = _first_orders(rng, timeline, signup, orders)
    clock_first = np.zeros(n)
    window = np.zeros(n)
    for m in range(len(MARKETS)):
        mask = buyers & (market == m)
        clock_first[mask] = timeline.to_clock(m, first_order[mask].astype(np.float64))
        window[mask] = timeline.clock_end(m) - clock_first[mask]
    repeats, clock_stop, stopped = _repeats(rng, window, buyers, orders - int(buyers.sum()))
    clock_stop += clock_first

    activity = 1.0 + 1.6 * np.where(buyers, 1 + repeats, 0)
    event_counts = rng.multinomial(events, activity / activity.sum()).astype(np.int32)
    favourite = rng.choice(
        len(CATEGORIES), size=n, p=[c.share / sum(x.share for x in CATEGORIES) for c in CATEGORIES]
    ).astype(np.int8)
    return Population(
        market=market,
        signup=signup,
        root=root,
        gender=gender,
        sex=sex,
        first=first,
        last=last,
        email_style=style,
        email_domain=domain,
        birthday=birthday,
        loyalty=rng.random(n) < 0.35,
        channel=channel,
        first_order=first_order,
        repeats=repeats.astype(np.int32),
        clock_first=clock_first,
        clock_stop=clock_stop,
        stopped=stopped,
        taste=rng.beta(2.0, 2.6, n).astype(np.float32),
        favourite=favourite,
        basket=rng.gamma(2.0, 0.3, n).astype(np.float32),
        events=event_counts,
    )


def _signups(rng: np.random.Generator, timeline: Timeline, market: I8) -> I64:
    """Sign-up seconds: growing over the period, busier in each market's shopping season."""
    uniform = rng.random(len(market))
    signup = np.empty(len(market), dtype=np.int64)
    for m in range(len(MARKETS)):
        mask = market == m
        signup[mask] = timeline.signup_times(m, uniform[mask]).astype(np.int64)
    result: I64 = np.clip(signup, timeline.start, timeline.end - 1)
    return result


def _shared_emails(rng: np.random.Generator, n: int) -> I32:
    """About 0.5% of customers reuse the email of an earlier customer (a second account)."""
    root = np.arange(n, dtype=np.int32)
    if n < 2:
        return root
    k = round(SHARED_EMAIL_RATE * n)
    later = np.sort(rng.choice(np.arange(1, n), size=k, replace=False))
    earlier = (rng.random(k) * later).astype(np.int32)
    for j, i in zip(later.tolist(), earlier.tolist(), strict=True):
        root[j] = root[i]
    return root


def _market_choices(rng: np.random.Generator, market: I8) -> tuple[I8, I8, I8]:
    """Email style, email provider and acquisition channel, by each market's habits."""
    n = len(market)
    # Name-based styles 0..4 everywhere; about 30% of Chinese customers use a QQ number.
    style = rng.choice(QQ_STYLE, size=n, p=[0.32, 0.16, 0.24, 0.14, 0.14]).astype(np.int8)
    domain = np.zeros(n, dtype=np.int8)
    channel = np.zeros(n, dtype=np.int8)
    for m, spec in enumerate(MARKETS):
        mask = market == m
        k = int(mask.sum())
        weights = np.array([w for _, w in spec.email_domains])
        domain[mask] = rng.choice(len(weights), size=k, p=weights / weights.sum())
        chan_weights = np.array([w for _, w in spec.channels])
        channel[mask] = rng.choice(len(chan_weights), size=k, p=chan_weights / chan_weights.sum())
    qq = (market == CN) & (rng.random(n) < 0.3)
    style[qq] = QQ_STYLE
    return style, domain, channel


def _birthdays(rng: np.random.Generator, signup: I64, root: I32) -> I32:
    """Birth dates for ~80% of customers; adults, most between 22 and 45."""
    n = len(signup)
    age_days = (18 + np.minimum(rng.gamma(2.2, 7.0, n), 62)) * 365.25
    epoch_ordinal = date(1970, 1, 1).toordinal()
    ordinal = (epoch_ordinal + signup // DAY - age_days).astype(np.int32)
    ordinal = ordinal[root]
    ordinal[rng.random(n) < 0.2] = 0
    return ordinal


def _first_orders(
    rng: np.random.Generator, timeline: Timeline, signup: I64, orders: int
) -> tuple[I64, Bools]:
    """Who buys at all, and when the first order happens (often in the sign-up session)."""
    n = len(signup)
    buyers = rng.random(n) < BUYER_RATE
    if buyers.sum() > orders:
        keep = rng.choice(np.flatnonzero(buyers), size=orders, replace=False)
        buyers = np.zeros(n, dtype=bool)
        buyers[keep] = True
    same_session = rng.random(n) < 0.55
    delay = np.where(same_session, rng.exponential(480.0, n), rng.exponential(12.0 * DAY, n))
    room = (timeline.end - 1 - signup).astype(np.float64)
    delay = np.where(delay > room, rng.random(n) * room, delay)
    first_order = np.where(buyers, signup + delay.astype(np.int64), -1)
    return first_order, buyers


def _repeats(
    rng: np.random.Generator, window: F64, buyers: Bools, target: int
) -> tuple[I64, F64, Bools]:
    """Repeat counts summing exactly to `target`, with each buyer's repeat window.

    Returns (repeats, window end relative to the first order, stopped).
    """
    n = len(window)
    repeats = np.zeros(n, dtype=np.int64)
    stop = window.copy()
    stopped = np.zeros(n, dtype=bool)
    n_buyers = int(buyers.sum())
    if target <= 0 or n_buyers == 0:
        return repeats, stop, stopped
    per_buyer = target / n_buyers
    # Mean number of repeats before dropping out, E[1/p] = (a + b - 1) / (a - 1): kept well
    # above the requested repeats per buyer so that dropout shapes, but never caps, the total.
    b = (2.5 * per_buyer + 2.0) * (DROPOUT_A - 1.0) - DROPOUT_A + 1.0
    p = rng.beta(DROPOUT_A, b, n)
    rate = rng.gamma(LAMBDA_SHAPE, 1.0, n) * window
    rate[~buyers] = 0.0
    scale = _calibrate(rate, p, target)
    mu = scale * rate
    arrivals = rng.poisson(mu)
    lifetime = rng.geometric(p)
    repeats = np.minimum(np.minimum(arrivals, lifetime), MAX_REPEATS)
    stopped = arrivals >= lifetime
    # Given N arrivals in the window, the K-th of them sits at a Beta(K, N - K + 1) fraction.
    tail = np.maximum(arrivals - lifetime + 1, 1)
    stop = np.where(stopped, window * rng.beta(np.maximum(lifetime, 1), tail), window)
    repeats = _match_total(rng, repeats, -np.expm1(-mu * p) / p, buyers, target)
    stopped &= repeats > 0
    return repeats, stop, stopped


def _calibrate(rate: F64, p: F64, target: int) -> float:
    """The factor on purchase rates whose expected repeat total equals `target` (bisection)."""

    def expected(scale: float) -> float:
        return float(np.sum(-np.expm1(-scale * rate * p) / p))

    low, high = 0.0, 1.0
    while expected(high) < target and high < 1e9:
        high *= 2.0
    for _ in range(60):
        mid = 0.5 * (low + high)
        if expected(mid) < target:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


def _match_total(
    rng: np.random.Generator, repeats: I64, expected: F64, buyers: Bools, target: int
) -> I64:
    """Add or remove repeats (proportionally to each buyer's count) to hit `target` exactly.

    Additions go to customers who already repeat; if nobody does, to buyers by their expected
    repeats, or evenly when even those are all zero (a period too short to repeat in).
    """
    diff = target - int(repeats.sum())
    if diff > 0:
        weights = repeats.astype(np.float64)
        if weights.sum() == 0:
            weights = np.where(buyers, expected, 0.0)
        if weights.sum() == 0:
            weights = buyers.astype(np.float64)
        extra: I64 = rng.multinomial(diff, weights / weights.sum())
        return repeats + extra
    if diff < 0:
        fewer: I64 = rng.multivariate_hypergeometric(repeats, -diff, method="marginals")
        return repeats - fewer
    return repeats
