"""Benchmark all traits on a generated shop, against what a user would otherwise pick.

Builds a fresh cdp installation (SQLite in a temporary directory, or the PostgreSQL database
given with --pg-url, which is emptied), loads N customers and M orders generated with numpy
(about 93% completed, the rest refunded or cancelled, over two years), then measures, in the
same run and on the same data:

* cdp: order traits (facts, RFM, lifecycle, value layer; one INSERT ... SELECT), loyalty
  tiers, the points ledger, and CLV (summary in SQL, BG/NBD + Gamma-Gamma fits, predictions);
* pandas: reading the orders into a DataFrame and computing the same RFM scores (the result
  is checked equal to cdp's, buyer by buyer);
* lifetimes: ``summary_data_from_transaction_data`` then ``BetaGeoFitter.fit`` on the same
  transactions (summaries and parameters compared with cdp's).

Targets (issue 6): all traits on 1,000,000 customers / 10,000,000 orders under 60 s on
SQLite; the CLV fits on 100,000 customers under 5 s and cdp at least 5x faster than the
lifetimes path. The defaults are smaller (100,000 / 1,000,000) so a run takes minutes:

    python bench/traits.py                          # SQLite, 100k customers, 1M orders
    python bench/traits.py --customers 1000000 --orders 10000000
    python bench/traits.py --pg-url postgresql+psycopg://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

START = date(2024, 11, 1)
DAYS = 730
NOW = datetime.combine(START + timedelta(days=DAYS), datetime.min.time(), tzinfo=UTC)


def _alpha_for(mean_repeats: float, r: float, a: float, b: float, ages: Any) -> float:
    """The BG/NBD alpha whose mean repeat purchases over the given ages is ``mean_repeats``."""
    from cdp.traits import clv_model as cm

    sample = np.asarray(ages)[:2000]
    lo, hi = 1e-3, 1e4
    for _ in range(60):
        mid = (lo * hi) ** 0.5
        got = float(cm.bgnbd_expected_purchases(cm.BgNbdParams(r, mid, a, b), t=sample).mean())
        lo, hi = (mid, hi) if got > mean_repeats else (lo, mid)
    return (lo * hi) ** 0.5


def generate(n: int, m: int, seed: int) -> dict[str, Any]:
    """Customers whose purchases follow BG/NBD (so that the CLV fits have something to find),
    10% without orders, ~7% of orders refunded or cancelled, about ``m`` orders in all."""
    from cdp.traits.clv_simulate import simulate_bgnbd

    rng = np.random.default_rng(seed)
    buyers = int(n * 0.9)
    completed = int(m * 0.93)
    age_days = rng.integers(1, DAYS, size=buyers)
    r, a, b = 0.6, 0.7, 3.0
    alpha = _alpha_for(completed / buyers - 1, r, a, b, age_days / 7)
    sim = simulate_bgnbd(buyers, r, alpha, a, b, age_days / 7, rng, time_step=1 / 7)
    t_days = np.round(sim.recency * 7).astype(np.int64)
    x = np.where(t_days > 0, sim.frequency.astype(np.int64), 0)
    first = DAYS - age_days
    owner = np.repeat(np.arange(buyers), x)
    offset = 1 + (rng.random(owner.size) * t_days[owner]).astype(np.int64)
    offset[np.cumsum(x)[x > 0] - 1] = t_days[x > 0]  # the last repeat day is t_x
    owners = np.concatenate([np.arange(buyers), owner])
    day = np.concatenate([first, first[owner] + offset])
    status = np.full(owners.size, "completed", dtype="<U9")
    extra = max(0, m - owners.size)
    extra_owner = rng.integers(0, buyers, size=extra)
    extra_day = first[extra_owner] + (rng.random(extra) * age_days[extra_owner]).astype(np.int64)
    owners = np.concatenate([owners, extra_owner])
    day = np.concatenate([day, extra_day])
    status = np.concatenate([status, rng.choice(np.array(["refunded", "cancelled"]), size=extra)])
    seconds = rng.integers(0, 86_400, size=owners.size)
    base = np.datetime64(START.isoformat(), "s")
    stamps = (base + day * 86_400 + seconds).astype("datetime64[us]")
    value = np.round(rng.gamma(2.0, 30.0, size=owners.size) + 1.0, 2)
    ids = np.array([f"{i:032x}" for i in range(n)])
    return {"ids": ids, "owner": owners, "stamps": stamps, "status": status, "value": value}


CHUNK = 500_000


def _order_rows(data: dict[str, Any], lo: int, hi: int, sqlite: bool) -> Any:
    text = np.datetime_as_string(data["stamps"][lo:hi], unit="us")
    text = np.char.replace(text, "T", " ") if sqlite else np.char.add(text, "+00")
    value = data["value"][lo:hi]
    return zip(
        (f"b{i}" for i in range(lo, hi)),
        data["ids"][data["owner"][lo:hi]].tolist(),
        text.tolist(),
        data["status"][lo:hi].tolist(),
        np.round(value * 100).astype(np.int64).tolist(),
        value.tolist(),
        strict=True,
    )


def load_sqlite(engine: sa.Engine, data: dict[str, Any]) -> None:
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("BEGIN")
        now = "2024-11-01 00:00:00.000000"
        cur.executemany(
            "INSERT INTO subjects (id, created_at, updated_at) VALUES (?, ?, ?)",
            ((i, now, now) for i in data["ids"].tolist()),
        )
        for lo in range(0, len(data["owner"]), CHUNK):
            hi = min(lo + CHUNK, len(data["owner"]))
            cur.executemany(
                "INSERT INTO orders (order_ref, subject_id, ordered_at, status, currency,"
                " total_minor, discount_minor, value_base, source, created_at, updated_at)"
                f" VALUES (?, ?, ?, ?, 'EUR', ?, 0, ?, 'bench', '{now}', '{now}')",
                _order_rows(data, lo, hi, sqlite=True),
            )
        cur.execute("COMMIT")
        cur.execute("ANALYZE")
    finally:
        raw.close()


def load_postgres(engine: sa.Engine, data: dict[str, Any]) -> None:
    raw = engine.raw_connection()
    epoch = "2024-11-01 00:00:00+00"
    try:
        cur = raw.cursor()
        with cur.copy("COPY subjects (id, created_at, updated_at) FROM STDIN") as copy:
            for i in data["ids"].tolist():
                copy.write_row((i, epoch, epoch))
        cols = "(order_ref, subject_id, ordered_at, status, total_minor, value_base, currency,"
        cols += " discount_minor, source, created_at, updated_at)"
        with cur.copy(f"COPY orders {cols} FROM STDIN") as copy:
            for lo in range(0, len(data["owner"]), CHUNK):
                hi = min(lo + CHUNK, len(data["owner"]))
                for row in _order_rows(data, lo, hi, sqlite=False):
                    copy.write_row((*row, "EUR", 0, "bench", epoch, epoch))
        raw.commit()
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()


def timed(label: str, fn: Any, sink: dict[str, float]) -> Any:
    t = time.perf_counter()
    out = fn()
    sink[label] = time.perf_counter() - t
    print(f"  {label:<44} {sink[label]:8.2f} s", flush=True)
    return out


def pandas_rfm(engine: sa.Engine, sink: dict[str, float]) -> Any:
    import pandas as pd

    today = (NOW.date() - date(1970, 1, 1)).days

    def read() -> Any:
        with engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
            return pd.read_sql(
                sa.text(
                    "SELECT subject_id, ordered_at, value_base FROM orders "
                    "WHERE status = 'completed' AND subject_id IS NOT NULL"
                ),
                conn,
            )

    df = timed("pandas: read completed orders", read, sink)

    def compute() -> Any:
        ts = pd.to_datetime(df["ordered_at"], utc=True, format="mixed")
        day = (ts.dt.tz_localize(None).dt.normalize() - pd.Timestamp("1970-01-01")).dt.days
        g = df.assign(day=day).groupby("subject_id")
        per = pd.DataFrame(
            {
                "occ": g["day"].nunique(),
                "last": g["day"].max(),
                "total": g["value_base"].sum().round(2),
            }
        )
        n = len(per)
        for col, src in (("r", "last"), ("f", "occ"), ("m", "total")):
            per[col] = 1 + (5 * (per[src].rank(method="min").astype(np.int64) - 1)) // n
        per["days_since"] = today - per["last"]
        return per

    return timed("pandas: facts + RFM scores", compute, sink)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument(
        "--pg-url", default=None, help="PostgreSQL URL (emptied!) instead of SQLite"
    )
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--skip-baselines", action="store_true", help="cdp only")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="cdp-bench-"))
    os.environ["CDP_HOME"] = str(home)
    if args.pg_url:
        admin = sa.create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.exec_driver_sql("DROP SCHEMA public CASCADE")
            c.exec_driver_sql("CREATE SCHEMA public")
        admin.dispose()
        os.environ["CDP_DATABASE_URL"] = args.pg_url
    from cdp.bootstrap import initialize
    from cdp.clock import FrozenClock
    from cdp.runtime import get_runtime
    from cdp.settings import get_settings
    from cdp.traits import clv, loyalty, order_traits, points
    from cdp.traits.config import TraitsConfig

    initialize(get_settings())
    rt = get_runtime()
    engine = rt.data_engine
    t = time.perf_counter()
    data = generate(args.customers, args.orders, args.seed)
    (load_postgres if args.pg_url else load_sqlite)(engine, data)
    done = int((data["status"] == "completed").sum())
    print(
        f"backend {engine.dialect.name}; {args.customers:,} customers, {len(data['owner']):,}"
        f" orders ({done:,} completed); generated and loaded in"
        f" {time.perf_counter() - t:.1f} s (not part of any figure)"
    )

    cfg, s = TraitsConfig(), {}
    now = FrozenClock(NOW)()
    print("cdp")

    def run(fn: Any) -> Any:
        with engine.begin() as conn:
            return fn(conn)

    timed(
        "order traits (facts, RFM, lifecycle, layer)",
        lambda: run(lambda c: order_traits.compute_order_traits(c, cfg=cfg, now=now)),
        s,
    )
    timed(
        "loyalty tiers",
        lambda: run(lambda c: loyalty.evaluate_tiers(c, cfg=cfg.loyalty, now=now)),
        s,
    )
    total = s["order traits (facts, RFM, lifecycle, layer)"] + s["loyalty tiers"]
    print(f"  {'= all traits (target < 60 s at 1M/10M)':<44} {total:8.2f} s")
    timed(
        "points ledger (earn + expire)",
        lambda: run(lambda c: points.update_ledger(c, cfg=cfg.points, now=now)),
        s,
    )
    cal_end = NOW.date() - timedelta(days=1)
    summ = timed(
        "CLV summary in SQL", lambda: run(lambda c: clv.summary(c, calibration_end=cal_end)), s
    )
    from cdp.traits import clv_model as cm

    bg = timed(
        "BG/NBD fit",
        lambda: cm.fit_bgnbd(frequency=summ.frequency, recency=summ.recency, age=summ.age),
        s,
    )
    timed(
        "Gamma-Gamma fit",
        lambda: cm.fit_gamma_gamma(frequency=summ.frequency, mean_spend=summ.mean_spend),
        s,
    )
    run(lambda c: clv.fit(c, calibration_end=cal_end, now=now))
    timed("CLV predictions stored", lambda: run(lambda c: clv.predict(c, cfg=cfg.clv, now=now)), s)
    if args.skip_baselines:
        return

    print("pandas")
    per = pandas_rfm(engine, s)
    with engine.connect() as conn:
        ours = {
            r[0]: tuple(r[1:])
            for r in conn.execute(
                sa.text(
                    "SELECT subject_id, recency_score, frequency_score, monetary_score"
                    " FROM subject_traits WHERE recency_score IS NOT NULL"
                )
            )
        }
    same = sum(
        ours.get(k) == (r, f, m) for k, r, f, m in zip(per.index, per.r, per.f, per.m, strict=True)
    )
    print(f"  RFM scores equal to cdp for {same:,} of {len(per):,} buyers ({len(ours):,} in cdp)")

    print("lifetimes")
    warnings.simplefilter("ignore")
    import pandas as pd
    from lifetimes import BetaGeoFitter
    from lifetimes.utils import summary_data_from_transaction_data

    def read_tx() -> Any:
        with engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
            df = pd.read_sql(
                sa.text(
                    "SELECT subject_id, ordered_at, value_base FROM orders"
                    " WHERE status = 'completed' AND subject_id IS NOT NULL"
                ),
                conn,
            )
        df["date"] = pd.to_datetime(df["ordered_at"], utc=True, format="mixed").dt.tz_localize(None)
        return df

    tx = timed("read transactions", read_tx, s)
    lt = timed(
        "summary_data_from_transaction_data",
        lambda: summary_data_from_transaction_data(
            tx,
            "subject_id",
            "date",
            monetary_value_col="value_base",
            observation_period_end=pd.Timestamp(cal_end),
            freq="D",
        ),
        s,
    )
    x, rec, big_t = (lt[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    bgf = timed("BetaGeoFitter.fit", lambda: BetaGeoFitter().fit(x, rec / 7, big_t / 7), s)
    order = np.argsort(np.array(summ.subject_ids))
    lt_sorted = lt.sort_index()
    equal = np.array_equal(lt_sorted["frequency"].to_numpy(), summ.frequency[order])
    equal &= np.allclose(lt_sorted["recency"].to_numpy() / 7, summ.recency[order])
    equal &= np.allclose(lt_sorted["T"].to_numpy() / 7, summ.age[order])
    print(f"  summaries (x, t_x, T) equal to cdp's: {equal}")
    print("comparison")
    for k in ("r", "alpha", "a", "b"):
        ours_v, theirs = getattr(bg.params, k), float(bgf.params_[k])
        rel = abs(ours_v - theirs) / theirs
        print(f"  {k:<6} cdp {ours_v:12.6g}  lifetimes {theirs:12.6g}  rel diff {rel:.1e}")
    cdp_path = s["CLV summary in SQL"] + s["BG/NBD fit"]
    lt_path = s["summary_data_from_transaction_data"] + s["BetaGeoFitter.fit"]
    print(
        f"  BG/NBD path: cdp {cdp_path:.2f} s vs lifetimes {lt_path:.2f} s "
        f"(+{s['read transactions']:.2f} s reading) -> {lt_path / cdp_path:.1f}x; "
        f"fit alone {s['BetaGeoFitter.fit'] / s['BG/NBD fit']:.1f}x"
    )
    pd_total = s["pandas: read completed orders"] + s["pandas: facts + RFM scores"]
    print(
        f"  RFM: cdp order traits {s['order traits (facts, RFM, lifecycle, layer)']:.2f} s "
        f"(stored) vs pandas {pd_total:.2f} s (read + compute, in memory only)"
    )


if __name__ == "__main__":
    main()
