"""Benchmark all traits on a generated shop, against what a user would otherwise pick.

Builds a fresh cdp installation (SQLite in a temporary directory, or a PostgreSQL database that
is dropped and re-created), loads N customers and M orders generated with numpy (about 93%
completed, the rest refunded or cancelled, over two years; rows written straight into the
tables, see ``traits_data.py``), then measures, in the same run and on the same data:

* cdp: order traits (facts, RFM, lifecycle, value layer), loyalty tiers, the points ledger
  (first backfill, then an incremental run), and CLV (summary, BG/NBD + Gamma-Gamma fits,
  predictions stored). The CLV summary is timed from both sources: the order facts that the
  order traits step has just stored (what ``cdp traits compute`` fits on; their cost is in
  the order traits figure, which the user pays for RFM and lifecycle anyway), and a fresh
  pass over all orders (what ``cdp clv fit --from-orders`` does, or any fit for another day);
* pandas: reading the orders into a DataFrame and computing the same RFM scores (the result
  is checked equal to cdp's, buyer by buyer);
* lifetimes: ``summary_data_from_transaction_data`` then ``BetaGeoFitter.fit`` on the same
  transactions (summaries and parameters compared with cdp's).

Every figure is wall time with this process's CPU time beside it (the machine may be shared),
and, on a PostgreSQL server on this machine, the CPU time of the backend that ran the step
(read from /proc; parallel workers not included), and the load average.

Targets (issue 6): all traits on 1,000,000 customers / 10,000,000 orders under 60 s on
SQLite and faster on PostgreSQL; the CLV fits on 100,000 customers under 5 s and cdp at least
5x faster than the lifetimes path. The default size (100,000 / 1,000,000) takes a few minutes:

    python bench/traits.py                    # SQLite, 100k customers, 1M orders
    python bench/traits.py --full             # the issue's size, 1M customers, 10M orders
    python bench/traits.py --full --pg-url postgresql+psycopg://postgres@127.0.0.1:5432/cdp_bench
    CDP_DATABASE_URL=postgresql+psycopg://... python bench/traits.py   # the same, from the env
    python bench/traits.py --full --prepare-only   # only generate, load and cache the shop
    python bench/traits.py --full --skip-ledger    # without the points ledger runs (long)

The PostgreSQL database is dropped and re-created, so its name must contain "bench" (or set
CDP_BENCH_FORCE=1). Loaded shops are cached (``--cache-dir``, default ``~/.cache/cdp-bench``
or ``$CDP_BENCH_CACHE``; PostgreSQL keeps a template database ``cdp_bench_cache_<key>``);
``--no-cache`` always regenerates. A cached SQLite shop of the full size takes ~4.4 GB.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import warnings
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from traits_data import NOW, load, prepare, store_cache

CPU: dict[str, float] = {}
SRV: dict[str, float] = {}
SERVER = [0.0]  # PostgreSQL: CPU seconds of the backends that ran the steps (local server only)


def backend_cpu(conn: sa.Connection) -> float | None:
    """CPU seconds used so far by this connection's PostgreSQL backend, when the server runs on
    this machine (read from /proc); None on SQLite or when it cannot be read. Parallel
    workers' CPU is not included."""
    if conn.dialect.name != "postgresql":
        return None
    pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(label: str, fn: Any, sink: dict[str, float]) -> Any:
    """Run ``fn``; record and print its wall time, and this process's CPU time beside it (on
    a shared machine the wall time includes waiting for a core; for SQLite, numpy and pandas
    the process CPU time is the work itself, for PostgreSQL the server's work is not in it)."""
    t, c, server = time.perf_counter(), time.process_time(), SERVER[0]
    out = fn()
    sink[label] = time.perf_counter() - t
    CPU[label] = time.process_time() - c
    used = SRV[label] = SERVER[0] - server
    on_server = f"; server cpu {used:6.2f} s" if used else ""
    print(
        f"  {label:<44} {sink[label]:8.2f} s   (cpu {CPU[label]:6.2f} s{on_server};"
        f" load {os.getloadavg()[0]:.1f})",
        flush=True,
    )
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


def _pg_url(arg: str | None) -> str | None:
    """--pg-url, else CDP_DATABASE_URL when it names PostgreSQL; None means SQLite."""
    url = arg or os.environ.get("CDP_DATABASE_URL")
    if url and not url.startswith("postgresql"):
        raise SystemExit("only PostgreSQL URLs are supported (SQLite is the default)")
    if url and "bench" not in sa.make_url(url).database and not os.environ.get("CDP_BENCH_FORCE"):
        raise SystemExit(
            "the bench drops and re-creates its database: use one whose name contains 'bench'"
            " (or set CDP_BENCH_FORCE=1)"
        )
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument(
        "--full", action="store_true", help="the issue's size: 1,000,000 customers, 10M orders"
    )
    parser.add_argument(
        "--pg-url",
        default=None,
        help="PostgreSQL URL (default: env CDP_DATABASE_URL); the database is re-created!",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("CDP_BENCH_CACHE", Path.home() / ".cache" / "cdp-bench")),
        help="where loaded databases are kept between runs (PostgreSQL: template databases)",
    )
    parser.add_argument("--no-cache", action="store_true", help="always generate and load")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--skip-baselines", action="store_true", help="cdp only")
    parser.add_argument("--skip-ledger", action="store_true", help="no points ledger runs")
    parser.add_argument(
        "--prepare-only", action="store_true", help="generate, load and cache the shop, then stop"
    )
    args = parser.parse_args()
    if args.full:
        args.customers, args.orders = 1_000_000, 10_000_000
    cache_dir = None if args.no_cache else args.cache_dir
    pg_url = _pg_url(args.pg_url)

    home = Path(tempfile.mkdtemp(prefix="cdp-bench-"))
    try:
        run_bench(args, home, pg_url, cache_dir)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def run_bench(args: Any, home: Path, pg_url: str | None, cache_dir: Path | None) -> None:
    n, m, seed = args.customers, args.orders, args.seed
    t = time.perf_counter()
    url, cached = prepare(home=home, pg_url=pg_url, n=n, m=m, seed=seed, cache_dir=cache_dir)
    os.environ["CDP_HOME"] = str(home)
    os.environ["CDP_DATABASE_URL"] = url
    from cdp.bootstrap import initialize
    from cdp.clock import FrozenClock
    from cdp.runtime import get_runtime
    from cdp.settings import get_settings
    from cdp.traits import clv, loyalty, order_traits, points
    from cdp.traits.compute import run_steps
    from cdp.traits.config import TraitsConfig

    initialize(get_settings())
    rt = get_runtime()
    engine = rt.data_engine
    if not cached:
        load(engine, n=n, m=m, seed=seed)
        # the generated subjects carry no personal data, so no data keys; a key store with none
        # beside a database with subjects is what a lost key store looks like, which cdp refuses
        # to start on (the cached copy's next run): one subject gets its key, as ingestion does
        with engine.connect() as conn:
            first = conn.execute(sa.text("SELECT id FROM subjects ORDER BY id LIMIT 1")).scalar()
        if first is not None:
            rt.vault.create_keys([str(first)])
        rt.key_engine.dispose()  # the key store's WAL checkpointed into the file copied
        store_cache(engine, home=home, n=n, m=m, seed=seed, cache_dir=cache_dir)
    with engine.connect() as conn:
        counts = conn.execute(
            sa.text(
                "SELECT count(*), sum(CASE WHEN status = 'completed' THEN 1 ELSE 0 END) FROM orders"
            )
        ).one()
    print(
        f"backend {engine.dialect.name}; {n:,} customers, {counts[0]:,} orders"
        f" ({counts[1]:,} completed); {'copied from the cache' if cached else 'generated, loaded'}"
        f" in {time.perf_counter() - t:.1f} s (not part of any figure);"
        f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    if args.prepare_only:
        return

    cfg, s = TraitsConfig(), {}
    now = FrozenClock(NOW)()
    print("cdp")

    def run(fn: Any) -> Any:
        with engine.begin() as conn:
            before = backend_cpu(conn)
            out = fn(conn)
            after = backend_cpu(conn)
            if before is not None and after is not None:
                SERVER[0] += after - before
            return out

    # The two steps as `cdp traits compute` runs them: on PostgreSQL at the same time, each on
    # its own connection (CDP_TRAITS_WORKERS, default 2), on SQLite one after the other.
    order_label, tiers_label = "order traits (facts, RFM, lifecycle, layer)", "loyalty tiers"
    step_secs: dict[str, float] = {}
    step_srv: dict[str, float] = {}

    def measured(label: str, fn: Any) -> Any:
        def step(conn: sa.Connection) -> Any:
            before = backend_cpu(conn)
            out = fn(conn)
            after = backend_cpu(conn)
            if before is not None and after is not None:
                step_srv[label] = after - before
            return out

        return step

    workers = get_settings().traits_workers
    all_label = f"all traits (target < 60 s at 1M/10M; {workers} workers on PostgreSQL)"
    timed(
        all_label,
        lambda: run_steps(
            engine,
            {
                order_label: measured(
                    order_label, lambda c: order_traits.compute_order_traits(c, cfg=cfg, now=now)
                ),
                tiers_label: measured(
                    tiers_label, lambda c: loyalty.evaluate_tiers(c, cfg=cfg.loyalty, now=now)
                ),
            },
            workers=workers,
            seconds=step_secs,
        ),
        s,
    )
    both = sum(step_srv.values())  # the steps' backends (read inside them, not by `timed`)
    SERVER[0] += both
    for label in (order_label, tiers_label):
        s[label] = step_secs[label]
        on_server = f" (server cpu {step_srv[label]:6.2f} s)" if label in step_srv else ""
        print(f"    of which {label:<40} {s[label]:8.2f} s{on_server}")
    if both:
        print(f"    server cpu of both steps {both:.2f} s")
    for label in ("first backfill (earn + expire)", "next run (nothing new)"):
        if args.skip_ledger:
            break
        timed(
            f"points ledger, {label}",
            lambda: run(lambda c: points.update_ledger(c, cfg=cfg.points, now=now)),
            s,
        )
    cal_end = NOW.date() - timedelta(days=1)
    summ = timed(
        "CLV summary from the stored order facts",
        lambda: run(lambda c: clv.summary(c, calibration_end=cal_end, from_facts=True)),
        s,
    )
    assert summ.source == "facts", "the order facts of this run should apply"
    from_orders = timed(
        "CLV summary from all orders (cdp clv fit --from-orders)",
        lambda: run(lambda c: clv.summary(c, calibration_end=cal_end)),
        s,
    )
    same = from_orders.subject_ids == summ.subject_ids
    same = same and all(
        np.array_equal(getattr(from_orders, k), getattr(summ, k))
        for k in ("frequency", "recency", "age")
    )
    same = same and np.allclose(from_orders.mean_spend, summ.mean_spend, equal_nan=True)
    print(f"  both summaries equal: {same}")
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
    run(lambda c: clv.fit(c, calibration_end=cal_end, now=now, from_facts=True))
    stored: dict[str, float] = {}
    bulk_insert = clv.bulk_insert

    def timed_insert(*a: Any, **k: Any) -> None:
        t = time.perf_counter()
        bulk_insert(*a, **k)
        stored["s"] = time.perf_counter() - t

    clv.bulk_insert = timed_insert  # type: ignore[assignment]  (measure the storing alone)
    timed(
        "CLV predictions (summary, model, store)",
        lambda: run(lambda c: clv.predict(c, cfg=cfg.clv, now=now, from_facts=True)),
        s,
    )
    clv.bulk_insert = bulk_insert  # type: ignore[assignment]
    print(f"  {'  of which storing the rows':<44} {stored['s']:8.2f} s")
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
    lt_keys = ("summary_data_from_transaction_data", "BetaGeoFitter.fit")
    lt_path, lt_cpu = sum(s[k] for k in lt_keys), sum(CPU[k] for k in lt_keys)
    print(
        f"  lifetimes path: {lt_path:.2f} s (cpu {lt_cpu:.2f} s), given its transactions in"
        f" memory (+{s['read transactions']:.2f} s reading them, not counted)"
    )
    for what, key in (
        ("from the stored order facts (cdp traits compute; target 5x)", "stored order facts"),
        ("from all orders (cdp clv fit --from-orders)", "all orders (cdp clv fit --from-orders)"),
    ):
        cdp_keys = (next(k for k in s if k.startswith("CLV summary") and key in k), "BG/NBD fit")
        cdp_path = sum(s[k] for k in cdp_keys)
        cdp_cpu = sum(CPU[k] + SRV.get(k, 0.0) for k in cdp_keys)  # with PostgreSQL's work
        print(
            f"  BG/NBD path, summary {what}: cdp {cdp_path:.2f} s vs lifetimes {lt_path:.2f} s"
            f" -> {lt_path / cdp_path:.1f}x (cpu {cdp_cpu:.2f} s vs {lt_cpu:.2f} s ->"
            f" {lt_cpu / cdp_cpu:.1f}x)"
        )
    print(f"  fit alone {s['BetaGeoFitter.fit'] / s['BG/NBD fit']:.1f}x")
    pd_total = s["pandas: read completed orders"] + s["pandas: facts + RFM scores"]
    print(
        f"  RFM: cdp order traits {s['order traits (facts, RFM, lifecycle, layer)']:.2f} s "
        f"(stored) vs pandas {pd_total:.2f} s (read + compute, in memory only)"
    )


if __name__ == "__main__":
    main()
