"""The generated shop of ``bench/traits.py``: synthetic customers and orders, loaded fast.

Rows go straight into the tables (raw executemany on SQLite, COPY on PostgreSQL), not through
the ingest pipeline: the benchmark measures traits, not ingestion. The secondary indexes of
``orders`` are dropped for the load and rebuilt afterwards (a sorted build is much faster than
10M random index inserts), then ANALYZE runs so that the planners see real statistics.

A loaded database is cached between runs, keyed by size, seed and the schema's migrations:
SQLite as a copy of the database file (``--cache-dir``), PostgreSQL as a template database
(``cdp_bench_cache_<key>``) that the target database is re-created from.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

START = date(2024, 11, 1)
DAYS = 730
NOW = datetime.combine(START + timedelta(days=DAYS), datetime.min.time(), tzinfo=UTC)
CHUNK = 500_000
GENERATOR_VERSION = "2"  # bump when generate() or the loaders change what they write
ORDER_INDEXES = (
    "ix_orders_subject_id",
    "ix_orders_ordered_at",
    "ix_orders_subject_time_value",
    "ix_orders_completed",
)


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
    10% without orders, ~7% of orders refunded or cancelled, about ``m`` orders in all, in
    time order (as a shop's orders arrive)."""
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
    order = np.argsort(stamps, kind="stable")
    ids = np.array([f"{i:032x}" for i in range(n)])
    return {
        "ids": ids,
        "owner": owners[order],
        "stamps": stamps[order],
        "status": status[order],
        "value": value[order],
    }


def _order_rows(data: dict[str, Any], lo: int, hi: int, sqlite: bool) -> Any:
    text = np.datetime_as_string(data["stamps"][lo:hi], unit="us")
    text = np.char.replace(text, "T", " ") if sqlite else np.char.add(text, "+00")
    value = data["value"][lo:hi]
    return zip(
        (f"b{i:010d}" for i in range(lo, hi)),
        data["ids"][data["owner"][lo:hi]].tolist(),
        text.tolist(),
        data["status"][lo:hi].tolist(),
        np.round(value * 100).astype(np.int64).tolist(),
        value.tolist(),
        strict=True,
    )


def _order_index_ddl(engine: sa.Engine) -> list[Any]:
    from sqlalchemy.schema import CreateIndex

    from cdp.db import all_models  # noqa: F401  (every model, so every index, is registered)
    from cdp.profiles.models import Order

    table = Order.__table__  # type: ignore[attr-defined]
    wanted = [i for i in table.indexes if i.name in ORDER_INDEXES]
    return [CreateIndex(i).compile(dialect=engine.dialect) for i in wanted]


def load_sqlite(engine: sa.Engine, data: dict[str, Any]) -> None:
    """Subjects and orders through the raw driver, with the orders' indexes rebuilt after."""
    ddl = _order_index_ddl(engine)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("PRAGMA foreign_keys=OFF")
        cur.execute("PRAGMA synchronous=OFF")
        cur.execute("PRAGMA cache_size=-1000000")
        for name in ORDER_INDEXES:
            cur.execute(f"DROP INDEX IF EXISTS {name}")
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
        for statement in ddl:
            cur.execute(str(statement))
        cur.execute("COMMIT")
        cur.execute("ANALYZE")
        cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        raw.close()
    engine.dispose()


def load_postgres(engine: sa.Engine, data: dict[str, Any]) -> None:
    """Subjects and orders by COPY, with the orders' indexes rebuilt after."""
    ddl = _order_index_ddl(engine)
    raw = engine.raw_connection()
    epoch = "2024-11-01 00:00:00+00"
    try:
        cur = raw.cursor()
        for name in ORDER_INDEXES:
            cur.execute(f"DROP INDEX IF EXISTS {name}")
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
        cur.execute("SET maintenance_work_mem = '1GB'")
        for statement in ddl:
            cur.execute(str(statement))
        raw.commit()
        # VACUUM runs outside a transaction (set on the driver's connection: the pool's
        # wrapper would only take the attribute for itself).
        raw.driver_connection.autocommit = True  # type: ignore[union-attr]
        cur.execute("VACUUM ANALYZE subjects")
        cur.execute("VACUUM ANALYZE orders")
    finally:
        raw.close()
    engine.dispose()


def cache_key(n: int, m: int, seed: int) -> str:
    """Size, seed and generator version. A cached shop is upgraded by ``initialize`` like any
    installation, so schema changes after it was loaded do not invalidate it; a change to
    what the loader writes bumps :data:`GENERATOR_VERSION`."""
    digest = hashlib.sha256(GENERATOR_VERSION.encode())
    return f"{n}_{m}_{seed}_{digest.hexdigest()[:10]}"


def _pg_admin(url: str) -> tuple[sa.Engine, str]:
    parsed = sa.make_url(url)
    admin = sa.create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    return admin, str(parsed.database)


def _pg_recreate(admin: sa.Engine, name: str, template: str | None = None) -> None:
    with admin.connect() as c:
        c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        suffix = f' TEMPLATE "{template}"' if template else ""
        c.exec_driver_sql(f'CREATE DATABASE "{name}"{suffix}')


def _pg_exists(admin: sa.Engine, name: str) -> bool:
    with admin.connect() as c:
        found = c.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
        return found.first() is not None


def prepare(
    *, home: Path, pg_url: str | None, n: int, m: int, seed: int, cache_dir: Path | None
) -> tuple[str, bool]:
    """Make the database the bench runs on (from the cache when possible); returns its URL
    and whether it came from the cache. The caller then runs ``initialize`` (migrations are
    a no-op on a cached copy) and, when not cached, :func:`load`."""
    key = cache_key(n, m, seed)
    keys = _cached_keys(cache_dir, key) if cache_dir else None
    if pg_url is None:
        target = home / "cdp.db"
        cached = cache_dir / f"traits-{key}.db" if cache_dir else None
        if cached is not None and cached.exists() and keys is not None:
            shutil.copyfile(cached, target)
            _restore_keys(keys, home)
            return f"sqlite:///{target}", True
        return f"sqlite:///{target}", False
    admin, name = _pg_admin(pg_url)
    try:
        template = f"cdp_bench_cache_{key}"
        if cache_dir is not None and keys is not None and _pg_exists(admin, template):
            _pg_recreate(admin, name, template)
            _restore_keys(keys, home)
            return pg_url, True
        _pg_recreate(admin, name)
        return pg_url, False
    finally:
        admin.dispose()


KEY_FILES = ("master-keys.json", "keys.db")
"""The home's key file and embedded key store, cached beside the shop's database."""


def _cached_keys(cache_dir: Path, key: str) -> Path | None:
    kept = cache_dir / f"traits-{key}.keys"
    return kept if all((kept / name).exists() for name in KEY_FILES) else None


def _restore_keys(kept: Path, home: Path) -> None:
    for name in KEY_FILES:
        shutil.copyfile(kept / name, home / name)
        (home / name).chmod(0o600)


def load(engine: sa.Engine, *, n: int, m: int, seed: int) -> dict[str, Any]:
    """Generate and load the shop; returns the generated arrays."""
    data = generate(n, m, seed)
    (load_postgres if engine.dialect.name == "postgresql" else load_sqlite)(engine, data)
    return data


def store_cache(
    engine: sa.Engine, *, home: Path, n: int, m: int, seed: int, cache_dir: Path | None
) -> None:
    """Keep the freshly loaded database for the next run."""
    if cache_dir is None:
        return
    key = cache_key(n, m, seed)
    engine.dispose()
    # the shop's subjects are readable only with the key file and key store they were made
    # with: cdp refuses a database with subjects beside a new key file
    kept = cache_dir / f"traits-{key}.keys"
    kept.mkdir(parents=True, exist_ok=True)
    for name in KEY_FILES:
        shutil.copyfile(home / name, kept / name)
    if engine.dialect.name == "sqlite":
        cache_dir.mkdir(parents=True, exist_ok=True)
        partial = cache_dir / f"traits-{key}.db.partial"
        shutil.copyfile(home / "cdp.db", partial)
        partial.rename(cache_dir / f"traits-{key}.db")
        return
    admin, name = _pg_admin(engine.url.render_as_string(hide_password=False))
    try:
        _pg_recreate(admin, f"cdp_bench_cache_{key}", template=name)
    finally:
        admin.dispose()


def timed_load(engine: sa.Engine, *, n: int, m: int, seed: int) -> float:
    t = time.perf_counter()
    load(engine, n=n, m=m, seed=seed)
    return time.perf_counter() - t
