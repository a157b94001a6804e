"""Email addresses and phone numbers as customers type them in each market.

Emails are built from the ASCII spelling of the customer's name, a style (``first.last``,
``flast``, ...) and a number. The number is a bijective scramble of the customer's position, so
two customers share an address only when the population says so (one person with two accounts).
Phone numbers are valid national numbers in the market's own written format.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from cdp.demo.locales import MARKETS
from cdp.demo.people import MarketPools

QQ_STYLE = 5
"""Email styles 0..4 are first.last, first, flast, last.first, first_last; 5 is a QQ number."""
_SCRAMBLE = 2_654_435_761  # a prime, so it is coprime to every modulus used below


class EmailBook:
    """Turns a customer's name and email traits into their (clean) email address."""

    def __init__(self, customers: int, seed: int, pools: tuple[MarketPools, ...]) -> None:
        self._modulus = 10 ** max(3, len(str(customers)))
        self._offset = seed * 1_000_003
        self._pools = pools

    def number(self, index: NDArray[np.int64]) -> NDArray[np.int64]:
        """Distinct-per-customer number (a permutation of the customer positions)."""
        scrambled: NDArray[np.int64] = (index * _SCRAMBLE + self._offset) % self._modulus
        return scrambled

    def addresses(
        self,
        index: NDArray[np.int64],
        market: NDArray[np.int8],
        sex: NDArray[np.int8],
        first: NDArray[np.int16],
        last: NDArray[np.int16],
        style: NDArray[np.int8],
        domain: NDArray[np.int8],
    ) -> list[str]:
        """Email address of each customer (lower case, no surrounding spaces)."""
        numbers = self.number(index).tolist()
        qq_base = self._modulus
        out: list[str] = []
        for num, m, s, f, la, st, d in zip(
            numbers,
            market.tolist(),
            sex.tolist(),
            first.tolist(),
            last.tolist(),
            style.tolist(),
            domain.tolist(),
            strict=True,
        ):
            pools = self._pools[m]
            given = (pools.female if s == 0 else pools.male)[f][1]
            family = pools.family[la][1]
            host = MARKETS[m].email_domains[d][0]
            if st == 0:
                local = f"{given}.{family}{num}"
            elif st == 1:
                local = f"{given}{num}"
            elif st == 2:
                local = f"{given[0]}{family}{num}"
            elif st == 3:
                local = f"{family}.{given}{num}"
            elif st == 4:
                local = f"{given}_{family}{num}"
            else:
                local, host = str(qq_base + num * 7 % (9 * qq_base)), "qq.com"
            out.append(f"{local}@{host}")
        return out


def untidy(emails: list[str], rng: np.random.Generator, rate: NDArray[np.float64]) -> list[str]:
    """Give each address, with probability `rate`, capitals or stray spaces, as typed by hand."""
    n = len(emails)
    kind = np.where(rng.random(n) < rate, rng.integers(1, 5, n), 0).tolist()
    out = emails[:]
    for k, (e, how) in enumerate(zip(emails, kind, strict=True)):
        if how == 1:
            out[k] = e[:1].upper() + e[1:]
        elif how == 2:
            out[k] = e.upper()
        elif how == 3:
            out[k] = f" {e}"
        elif how == 4:
            out[k] = f"{e[:1].upper()}{e[1:]}  "
    return out


# --- phones -----------------------------------------------------------------------------------

_US_AREAS = (
    201, 202, 206, 212, 213, 214, 215, 303, 305, 310, 312, 313, 404, 407, 415, 469, 503, 510,
    512, 602, 614, 617, 646, 702, 713, 718, 720, 773, 805, 818, 858, 917, 949, 971,
)  # fmt: skip
_CN_PREFIXES = (
    130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 150, 151, 152, 153, 155, 156, 157, 158,
    159, 166, 176, 177, 178, 180, 181, 182, 183, 184, 185, 186, 187, 188, 189, 198, 199,
)  # fmt: skip
_DE_MOBILE = ("0151", "0152", "0157", "0160", "0162", "0170", "0171", "0172", "0176", "0177")
_DE_CITY = ("030", "040", "089", "069", "0221", "0211", "0711")
_GB_MOBILE = tuple(range(7400, 7600)) + tuple(range(7701, 7900))


def phones(locale: str, rng: np.random.Generator, n: int, empty_rate: float) -> list[str]:
    """`n` phone numbers written the national way of `locale`; about `empty_rate` left blank."""
    a = rng.integers(0, 10_000, n).tolist()
    b = rng.integers(0, 10_000, n).tolist()
    pick = rng.random(n).tolist()
    empty = (rng.random(n) < empty_rate).tolist()
    out: list[str]
    if locale == "zh_CN":
        pre = rng.choice(_CN_PREFIXES, n).tolist()
        out = [f"{p} {x:04d} {y:04d}" for p, x, y in zip(pre, a, b, strict=True)]
    elif locale == "en_US":
        area = rng.choice(_US_AREAS, n).tolist()
        exchange = rng.integers(200, 1000, n)
        exchange = np.where(exchange % 100 == 11, exchange + 1, exchange).tolist()
        out = [f"({r}) {e}-{y:04d}" for r, e, y in zip(area, exchange, b, strict=True)]
    elif locale == "en_GB":
        mob = rng.choice(_GB_MOBILE, n).tolist()
        out = [
            f"0{m} {x % 1000:03d}{y % 1000:03d}"
            if u < 0.75
            else f"020 {7 + x % 2}{x % 1000:03d} {y:04d}"
            for m, x, y, u in zip(mob, a, b, pick, strict=True)
        ]
    elif locale == "de_DE":
        mob = rng.choice(_DE_MOBILE, n).tolist()
        city = rng.choice(_DE_CITY, n).tolist()
        out = [
            f"{m} {x:04d}{y:04d}" if u < 0.6 else f"{c} {1 + x % 9}{y:04d}{x % 100:02d}"
            for m, c, x, y, u in zip(mob, city, a, b, pick, strict=True)
        ]
    elif locale == "fr_FR":
        # Mobiles 06 00-89 and 07 30-89, geographic 01-05 then 10-89; the pairs that belong
        # to overseas departments (06 39, 02 62) are skipped.
        kind = np.where(rng.random(n) < 0.55, 6, np.where(rng.random(n) < 0.4, 7, 0))
        lead = np.where(kind == 0, rng.integers(1, 6, n), kind)
        span = np.select([kind == 6, kind == 7], [89, 60], 79)
        pair = np.select([kind == 6, kind == 7], [0, 30], 10) + np.array(a) % span
        pair += ((lead == 6) & (pair >= 39)) | ((lead == 2) & (pair >= 62))
        out = [
            f"0{p} {q:02d} {x // 100:02d} {y // 100:02d} {y % 100:02d}"
            for p, q, x, y in zip(lead.tolist(), pair.tolist(), a, b, strict=True)
        ]
    else:
        mobile = rng.integers(7, 10, n).tolist()
        out = [
            f"0{m}0-{1000 + x % 9000}-{y:04d}" if u < 0.85 else f"03-{1000 + x % 9000}-{y:04d}"
            for m, x, y, u in zip(mobile, a, b, pick, strict=True)
        ]
    return ["" if e else p for p, e in zip(out, empty, strict=True)]
