"""Micro benchmark: audience-format rows per second on one core.

Builds synthetic decrypted profiles (deterministic), then times, for each format, a row per
profile, and beside it plain ``hashlib.sha256`` over the same profile strings as the limit no
normaliser can beat. Rates are rows per second of process CPU time. Decryption is not
included: add its cost per row to compare with the export budget (>= 30,000 rows/s per core
including decrypt).

Run: ``python bench/audience_formats.py [--rows 200000] [--phones e164|national]``
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import random
import time
from collections.abc import Callable, Sequence
from datetime import date

from cdp.exports.audience_formats import Profile, available_formats, get_format

FIRST = ["John", "José", "Zoë", "Wei", "小明", "Émilie", "Mary Ann", "Jürgen", "Olga", "Siobhán"]
LAST = ["Smith", "Pérez", "王", "Müller", "O'Brien", "Nguyễn", "Li", "Kowalski", "Dubois", "Ng"]
ASCII_NAMES = ["john", "jose", "zoe", "wei", "li", "emilie", "mary", "jurgen", "olga", "sio"]
DOMAINS = ["gmail.com", "example.com", "qq.com", "googlemail.com", "163.com", "web.de"]
PLACES = {
    "US": (["San Francisco", "New York", "Austin"], ["California", "NY", "Texas"]),
    "GB": (["London", "Manchester", "Leeds"], ["England", "Scotland", "Wales"]),
    "CN": (["Shanghai", "Beijing", "Shenzhen"], ["Shanghai", "Beijing", "Guangdong"]),
    "DE": (["Berlin", "München", "Köln"], ["Berlin", "Bayern", "Nordrhein-Westfalen"]),
}


def _digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(count))


def _phone(rng: random.Random, country: str, national: bool) -> str:
    if country == "US":
        line = f"{rng.randint(2, 9)}{_digits(rng, 2)}{_digits(rng, 4)}"
        return f"(415) {line[:3]}-{line[3:]}" if national else f"+1415{line}"
    if country == "GB":
        line = _digits(rng, 8)
        return f"020 {line[:4]} {line[4:]}" if national else f"+4420{line}"
    if country == "CN":
        line = _digits(rng, 8)
        return f"138 {line[:4]} {line[4:]}" if national else f"+86138{line}"
    line = _digits(rng, 8)
    return f"0151 {line}" if national else f"+49151{line}"


def _postal_code(rng: random.Random, country: str) -> str:
    if country == "US":
        return f"9{_digits(rng, 4)}-{_digits(rng, 4)}"
    if country == "GB":
        return f"SW{rng.randint(1, 9)}A {rng.randint(1, 9)}AA"
    return _digits(rng, 6 if country == "CN" else 5)


def synthetic_profiles(rows: int, *, national_phones: bool, seed: int = 7) -> list[Profile]:
    """Deterministic decrypted profiles, mixing scripts, accents and four countries."""
    rng = random.Random(seed)
    profiles: list[Profile] = []
    for index in range(rows):
        country = rng.choice(list(PLACES))
        cities, states = PLACES[country]
        handle = f"{rng.choice(ASCII_NAMES)}.{rng.choice(ASCII_NAMES)}{index}"
        profiles.append(
            {
                "email": f" {handle}+shop@{rng.choice(DOMAINS)}".title(),
                "phone": _phone(rng, country, national_phones),
                "first_name": rng.choice(FIRST),
                "last_name": rng.choice(LAST),
                "city": rng.choice(cities),
                "state": rng.choice(states),
                "postal_code": _postal_code(rng, country),
                "country": country.lower(),
                "gender": rng.choice(["female", "male", "F", "M", None]),
                "birthday": date(rng.randint(1940, 2006), rng.randint(1, 12), rng.randint(1, 28)),
            }
        )
    return profiles


def _rate(rows: int, run: Callable[[], object]) -> float:
    """Rows per second of this process's CPU time (so other load on the machine counts less)."""
    gc.collect()
    started = time.process_time()
    run()
    return rows / (time.process_time() - started)


def bench(rows: int, national_phones: bool) -> None:
    profiles = synthetic_profiles(rows, national_phones=national_phones)
    strings = [
        [value if isinstance(value, str) else value.isoformat() for value in p.values() if value]
        for p in profiles
    ]

    def plain_sha256(rows_of_strings: Sequence[list[str]] = strings) -> None:
        sha = hashlib.sha256
        for row in rows_of_strings:
            for value in row:
                sha(value.encode()).hexdigest()

    phones = "national formats" if national_phones else "E.164"
    print(f"{rows} synthetic profiles, phones in {phones}, one core")
    limit = _rate(rows, plain_sha256)
    print(f"  {'hashlib.sha256 over the same strings (limit)':46} {limit:>10,.0f} rows/s")
    for name in available_formats():
        fmt = get_format(name)

        def run(fmt_row: Callable[..., list[str]] = fmt.row) -> None:
            for profile in profiles:
                fmt_row(profile, default_region="US")

        rate = _rate(rows, run)
        print(f"  {name:46} {rate:>10,.0f} rows/s  ({1e6 / rate:5.1f} us/row)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--phones", choices=("e164", "national"), default="e164")
    args = parser.parse_args()
    bench(args.rows, national_phones=args.phones == "national")


if __name__ == "__main__":
    main()
