"""Per-subject order facts (both SQL formulations: SQLite's aggregate with index seeks and
PostgreSQL's day marks over a window) against a plain Python reference, on random orders with
the edge cases that matter: several orders on one day (first and last day too), one-occasion
buyers, orders a microsecond either side of midnight UTC, refunds and cancellations."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import pytest

from cdp.traits.facts import subject_facts
from cdp.traits.sqlfuncs import python_day
from tests.conftest import CdpEnv
from tests.traits.factories import OrderSpec, add_orders, make_subjects, subject_ids

END = datetime(2026, 6, 1, tzinfo=UTC)


def _orders(ids: list[str], rng: random.Random) -> list[OrderSpec]:
    specs = []
    for sid in ids:
        days = sorted(rng.sample(range(0, 400), rng.randint(1, 6)))
        for d in days:
            base = datetime.combine(date(2025, 3, 1) + timedelta(days=d), datetime.min.time())
            for _ in range(rng.choice((1, 1, 2, 3))):
                at = base.replace(tzinfo=UTC) + rng.choice(
                    (timedelta(0), timedelta(hours=12), timedelta(days=1, microseconds=-1))
                )
                status = rng.choice(("completed",) * 8 + ("refunded", "cancelled"))
                specs.append(OrderSpec(sid, at, round(rng.uniform(1, 200), 2), status))
    specs.append(OrderSpec(ids[0], END + timedelta(days=1), 50.0))  # after the end: ignored
    return specs


def _reference(specs: list[OrderSpec]) -> dict[str, tuple[object, ...]]:
    per: dict[str, list[OrderSpec]] = defaultdict(list)
    for s in specs:
        if s.status == "completed" and s.at < END and s.subject_id is not None:
            per[s.subject_id].append(s)
    out: dict[str, tuple[object, ...]] = {}
    for sid, rows in per.items():
        days = sorted({python_day(r.at) for r in rows})
        first_value = sum(r.value for r in rows if python_day(r.at) == days[0])
        gap = days[-1] - days[-2] if len(days) > 1 else None
        total = sum(r.value for r in rows)
        out[sid] = (len(rows), len(days), days[0], days[-1], total, first_value, gap)
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_facts_match_python_reference(cdp_env: CdpEnv, seed: int) -> None:
    rng = random.Random(seed)
    ids = subject_ids(60, prefix=0xFA + seed)
    specs = _orders(ids, rng)
    engine = cdp_env.runtime.data_engine
    with engine.begin() as conn:
        make_subjects(conn, ids)
        add_orders(conn, specs)
    query = subject_facts(END, first_value=True, last_gap=True, dialect=engine.dialect.name)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    got = {
        r["subject_id"]: (
            r["orders"],
            r["occasions"],
            r["first_day"],
            r["last_day"],
            r["total_value"],
            r["first_value"],
            r["last_gap_days"],
        )
        for r in rows
    }
    want = _reference(specs)
    assert set(got) == set(want)
    for sid, w in want.items():
        g = got[sid]
        assert g[:4] == w[:4], sid
        assert g[4] == pytest.approx(w[4]) and g[5] == pytest.approx(w[5]), sid
        assert g[6] == w[6], sid
