"""Customer rows of a chunk: identity, contact, address and custom traits.

Rows follow the ``customers.csv`` header in `CUSTOMER_HEADER`. Customers sharing an email
address (a second account of the same person) carry the first account's name and, half the
time, a differently typed version of its address, so that ingestion has to normalise before it
can merge them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import numpy as np
from numpy.typing import NDArray

from cdp.demo import fastfmt as ff
from cdp.demo.contact import EmailBook, phones, untidy
from cdp.demo.locales import MARKETS
from cdp.demo.people import MarketPools, street_lines
from cdp.demo.population import GENDERS, Population

CUSTOMER_HEADER = (
    "customer_id", "email", "phone", "first_name", "last_name", "birthday", "gender", "street",
    "city", "postal_code", "state", "country", "created_at", "loyalty_opt_in",
    "acquisition_channel",
)  # fmt: skip
UNTIDY_RATE = 0.025

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_Draw = Callable[[int, int], list[str]]
PHONE_EMPTY_RATE = 0.08


def make_customers(
    rng: np.random.Generator,
    pools: tuple[MarketPools, ...],
    book: EmailBook,
    pop: Population,
    lo: int,
    hi: int,
    customer_ids: list[str],
) -> tuple[bytes, list[str]]:
    """CSV rows of customers [lo, hi) (UTF-8) and their clean (trimmed, lower-case) emails.

    Fields that may hold a comma or quote (names, addresses) come from `people`, which quotes
    them; ids, emails, phones, dates and codes never need quoting.
    """
    part = pop.slice(lo, hi)
    root = part.root.astype(np.int64)
    emails = book.addresses(
        root, pop.market[root], pop.sex[root], pop.first[root], pop.last[root],
        pop.email_style[root], pop.email_domain[root],
    )  # fmt: skip
    shared = root != np.arange(lo, hi)
    typed = untidy(emails, rng, np.where(shared, 0.5, UNTIDY_RATE))

    phone = _by_market(
        part.market, lambda m, k: phones(MARKETS[m].locale, rng, k, PHONE_EMPTY_RATE)
    )
    street = _by_market(part.market, lambda m, k: street_lines(MARKETS[m].locale, pools[m], rng, k))

    def place(values: str) -> list[str]:
        def draw(m: int, k: int) -> list[str]:
            pool: tuple[str, ...] = getattr(pools[m], values)
            return [pool[i] for i in rng.integers(0, len(pool), k).tolist()]

        return _by_market(part.market, draw)

    city, postcode, state = place("cities"), place("postcodes"), place("states")
    markets = part.market.tolist()
    given = [
        (pools[m].female if s == 0 else pools[m].male)[f][0]
        for m, s, f in zip(markets, part.sex.tolist(), part.first.tolist(), strict=True)
    ]
    family = [pools[m].family[la][0] for m, la in zip(markets, part.last.tolist(), strict=True)]
    no_birthday = part.birthday == 0
    born = np.where(no_birthday, _EPOCH_ORDINAL, part.birthday).astype(np.int64) - _EPOCH_ORDINAL
    birthday = [
        "" if blank else text
        for text, blank in zip(
            ff.lines([ff.dates(born)], len(born)), no_birthday.tolist(), strict=True
        )
    ]
    created = ff.lines([ff.timestamps(part.signup)], len(born))
    country = [f",{m.country}," for m in MARKETS]
    traits = [
        [f",{'true' if loyal else 'false'},{name}\n" for name, _ in m.channels]
        for loyal in (False, True)
        for m in MARKETS
    ]
    lines = [
        f"{customer_ids[k]},{typed[k]},{phone[k]},{given[k]},{family[k]},{birthday[k]},"
        f"{GENDERS[g]},{street[k]},{city[k]},{postcode[k]},{state[k]}{country[m]}"
        f"{created[k]}{traits[loyal * len(MARKETS) + m][ch]}"
        for k, (m, g, loyal, ch) in enumerate(
            zip(markets, part.gender.tolist(), part.loyalty.tolist(), part.channel.tolist(),
                strict=True)
        )
    ]  # fmt: skip
    return "".join(lines).encode("utf-8"), emails


def _by_market(market: NDArray[np.int8], draw: _Draw) -> list[str]:
    """Values drawn per market, placed back in customer order."""
    out = np.empty(len(market), dtype=object)
    for m in range(len(MARKETS)):
        mask = market == m
        k = int(mask.sum())
        if k:
            out[mask] = draw(m, k)
    result: list[str] = out.tolist()
    return result
