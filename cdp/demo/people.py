"""Names and addresses per market, drawn from Faker once and then sampled with numpy.

Faker takes tens of microseconds per value, far too slow for a million customers. Each market
therefore gets fixed pools (names by sex, street names, cities, postcodes, states) generated once
from a seeded Faker; customers pick pool entries by index. Pools are drawn from Faker's own
weighted lists, so common names stay common.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass

import numpy as np
from faker import Faker

from cdp.demo import names_zh
from cdp.demo.locales import MARKETS

NAME_POOL = 512
"""Entries per name pool; population indices into the pools are drawn in [0, NAME_POOL)."""
PLACE_POOL = 384

_FOLD = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "æ": "ae", "œ": "oe"})


def csv_field(text: str) -> str:
    """`text` as a CSV field: quoted (with doubled quotes) when it holds a separator."""
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def ascii_fold(text: str) -> str:
    """Lower-case ASCII letters of a Latin-script name, as people write it in an email."""
    folded = unicodedata.normalize("NFKD", text.lower().translate(_FOLD))
    return "".join(c for c in folded if "a" <= c <= "z")


@dataclass(frozen=True, slots=True)
class MarketPools:
    """Everything sampled by index for one market.

    Names are (display spelling as a CSV field, ASCII spelling for email addresses); places
    are CSV fields.
    """

    female: tuple[tuple[str, str], ...]
    male: tuple[tuple[str, str], ...]
    family: tuple[tuple[str, str], ...]
    streets: tuple[str, ...]
    cities: tuple[str, ...]
    postcodes: tuple[str, ...]
    states: tuple[str, ...]


@functools.lru_cache(maxsize=4)
def build_pools(seed: int) -> tuple[MarketPools, ...]:
    """Draw the pools of every market from a Faker seeded with `seed` (immutable, cached)."""
    return tuple(_market_pools(m.locale, seed + 7919 * i) for i, m in enumerate(MARKETS))


def _market_pools(locale: str, seed: int) -> MarketPools:
    fake = Faker(locale)
    fake.seed_instance(seed)
    rng = np.random.default_rng(seed)
    female, male, family = _names(locale, fake, rng)
    if locale == "ja_JP":
        streets = tuple(fake.town() for _ in range(PLACE_POOL))
    else:
        streets = tuple(fake.street_name() for _ in range(PLACE_POOL))
    cities = tuple(csv_field(_city(locale, fake)) for _ in range(PLACE_POOL))
    postcodes = tuple(csv_field(fake.postcode()) for _ in range(PLACE_POOL))
    states = tuple(csv_field(_state(locale, fake)) for _ in range(PLACE_POOL))
    return MarketPools(female, male, family, streets, cities, postcodes, states)


Names = tuple[tuple[str, str], ...]


def _names(locale: str, fake: Faker, rng: np.random.Generator) -> tuple[Names, Names, Names]:
    if locale == "zh_CN":
        weights = np.array([w for _, _, w in names_zh.SURNAMES])
        picks = rng.choice(len(weights), size=NAME_POOL, p=weights / weights.sum())
        family = tuple((names_zh.SURNAMES[k][0], names_zh.SURNAMES[k][1]) for k in picks)
        female = tuple(
            names_zh.GIVEN_FEMALE[k] for k in rng.integers(0, len(names_zh.GIVEN_FEMALE), NAME_POOL)
        )
        male = tuple(
            names_zh.GIVEN_MALE[k] for k in rng.integers(0, len(names_zh.GIVEN_MALE), NAME_POOL)
        )
        return female, male, family
    if locale == "ja_JP":
        female = tuple(_pair(fake.first_name_female_pair()) for _ in range(NAME_POOL))
        male = tuple(_pair(fake.first_name_male_pair()) for _ in range(NAME_POOL))
        family = tuple(_pair(fake.last_name_pair()) for _ in range(NAME_POOL))
        return female, male, family
    female = tuple(_latin(fake.first_name_female()) for _ in range(NAME_POOL))
    male = tuple(_latin(fake.first_name_male()) for _ in range(NAME_POOL))
    family = tuple(_latin(fake.last_name()) for _ in range(NAME_POOL))
    return female, male, family


def _pair(pair: tuple[str, str, str]) -> tuple[str, str]:
    """(kanji, kana, romaji) -> (kanji as a CSV field, ascii romaji)."""
    return csv_field(pair[0]), ascii_fold(pair[2])


def _latin(name: str) -> tuple[str, str]:
    return csv_field(name), ascii_fold(name) or "user"


def _city(locale: str, fake: Faker) -> str:
    if locale == "zh_CN":
        return str(fake.city_name()) + "市"
    return str(fake.city())


def _state(locale: str, fake: Faker) -> str:
    if locale == "zh_CN":
        return str(fake.province())
    if locale == "en_US":
        return str(fake.state_abbr(include_territories=False))
    if locale == "en_GB":
        return str(fake.county())
    if locale == "de_DE":
        return str(fake.state())
    if locale == "fr_FR":
        return str(fake.region())
    return str(fake.prefecture())


# --- addresses ------------------------------------------------------------------------------


def street_lines(locale: str, pools: MarketPools, rng: np.random.Generator, n: int) -> list[str]:
    """`n` street lines in the local convention (house number placement, flats, chome).

    Returned as CSV fields: the many that contain a comma are quoted.
    """
    return [csv_field(line) for line in _street_lines(locale, pools, rng, n)]


def _street_lines(locale: str, pools: MarketPools, rng: np.random.Generator, n: int) -> list[str]:
    names = pools.streets
    idx = rng.integers(0, len(names), n).tolist()
    num = np.minimum(rng.lognormal(3.0, 1.1, n).astype(np.int64) + 1, 9999).tolist()
    extra = rng.integers(1, 40, n).tolist()
    has_extra = (rng.random(n) < 0.12).tolist()
    rows = zip(idx, num, extra, has_extra, strict=True)
    if locale == "zh_CN":
        return [f"{names[i]}{k}号" + (f"{e}栋" if x else "") for i, k, e, x in rows]
    if locale == "en_US":
        return [f"{k} {names[i]}" + (f", Apt {e}" if x else "") for i, k, e, x in rows]
    if locale == "en_GB":
        return [(f"Flat {e}, " if x else "") + f"{k} {names[i]}" for i, k, e, x in rows]
    if locale == "de_DE":
        return [f"{names[i]} {k}" + ("a" if x else "") for i, k, e, x in rows]
    if locale == "fr_FR":
        return [f"{k}" + (" bis" if x else "") + f", {names[i]}" for i, k, e, x in rows]
    chome = rng.integers(1, 9, n).tolist()
    return [
        f"{names[i]}{c}丁目{e}番{k % 30 + 1}号" for (i, k, e, _), c in zip(rows, chome, strict=True)
    ]
