"""Consent eligibility at export scale: the one-query SQL condition vs. deriving state in Python.

    python bench/consent.py [SUBJECTS]          # SQLite in a temporary CDP_HOME
    CDP_DATABASE_URL=... CDP_KEYSTORE_URL=... python bench/consent.py   # an empty PostgreSQL

Seeds SUBJECTS subjects (default 50,000) with 0-4 ledger entries each for email_marketing, then
times ``granted_subjects("email_marketing")`` (what segments and exports run) against the baseline
a user would otherwise write: read the purpose's whole ledger and derive the latest state per
subject in Python. Both answers are checked to be equal. Prints rows/s for each.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

if "CDP_HOME" not in os.environ:
    os.environ["CDP_HOME"] = tempfile.mkdtemp(prefix="cdp-bench-consent-")

from cdp.bootstrap import initialize
from cdp.consent.ledger_state import granted_subjects
from cdp.consent.models import ConsentEvent
from cdp.consent.service import dedupe_key
from cdp.db.models import Subject, new_subject_id
from cdp.runtime import get_runtime
from cdp.settings import get_settings

PURPOSE = "email_marketing"
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def seed(n: int) -> None:
    rt = get_runtime()
    rng = random.Random(7)
    subjects = Subject.__table__  # type: ignore[attr-defined]
    ledger = ConsentEvent.__table__  # type: ignore[attr-defined]
    for start in range(0, n, 5000):
        srows, lrows = [], []
        for _ in range(min(5000, n - start)):
            sid = new_subject_id()
            srows.append({"id": sid, "created_at": T0, "updated_at": T0})
            for _ in range(rng.randint(0, 4)):
                at = T0 + timedelta(hours=rng.randint(0, 5000))
                status = rng.choice(("granted", "withdrawn"))
                lrows.append(
                    {
                        "subject_id": sid,
                        "purpose": PURPOSE,
                        "status": status,
                        "occurred_at": at,
                        "recorded_at": at,
                        "source": "bench",
                        "notice_version": "v1",
                        "mechanism": "import",
                        "recorded_by": "bench",
                        "dedupe_key": dedupe_key(
                            subject_id=sid,
                            purpose=PURPOSE,
                            status=status,
                            occurred_at=at,
                            source="bench",
                        ),
                    }
                )
        with rt.data_engine.begin() as conn:
            conn.execute(sa.insert(subjects), srows)
            unique = list({r["dedupe_key"]: r for r in lrows}.values())  # same choice twice
            if unique:
                conn.execute(sa.insert(ledger), unique)


def python_baseline() -> set[str]:
    rt = get_runtime()
    ledger = ConsentEvent.__table__  # type: ignore[attr-defined]
    latest: dict[str, tuple[datetime, int, str]] = {}
    with rt.data_engine.connect() as conn:
        for sid, at, status in conn.execute(
            sa.select(ledger.c.subject_id, ledger.c.occurred_at, ledger.c.status).where(
                ledger.c.purpose == PURPOSE
            )
        ):
            key = (at, 1 if status == "withdrawn" else 0, status)
            if sid not in latest or key > latest[sid]:
                latest[sid] = key
    return {s for s, k in latest.items() if k[2] == "granted"}


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    initialize(get_settings())
    rt = get_runtime()
    print(f"backend={rt.data_engine.dialect.name} subjects={n}")
    t = time.perf_counter()
    seed(n)
    print(f"seeded in {time.perf_counter() - t:.1f}s")
    for label, fn in (
        ("sql granted_subjects (one query)", lambda: _sql()),
        ("baseline: ledger into Python", python_baseline),
    ):
        best = float("inf")
        result: set[str] = set()
        for _ in range(3):
            t = time.perf_counter()
            result = fn()
            best = min(best, time.perf_counter() - t)
        print(
            f"{label:36s} {best * 1000:8.1f} ms  {n / best:12,.0f} subjects/s"
            f"  granted={len(result)}"
        )
    assert _sql() == python_baseline()


def _sql() -> set[str]:
    with get_runtime().data_engine.connect() as conn:
        return set(conn.execute(granted_subjects(PURPOSE)).scalars())


if __name__ == "__main__":
    main()
