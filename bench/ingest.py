"""Ingestion benchmark: batch connectors on SQLite and PostgreSQL, peak memory on a large orders
file, the baseline a user would otherwise build, and the Segment API over loopback.

    python bench/ingest.py                      # defaults: a few minutes on a 2-core machine
    python bench/ingest.py --big-orders 5000000 # the 5M-order memory figure (long)
    python bench/ingest.py --skip-postgres --skip-http

Figures (one core each: the ingest runs in one process, single-threaded):
- customers and orders rows/s, end to end (read, parse, validate, normalise, tokens, keys,
  encryption, insert, commit), on SQLite and on PostgreSQL (``--pg-url``);
- baseline: the same customers (all of them unless ``--baseline-rows``) pseudonymised with
  presidio-anonymizer's ``hash`` operator (customer id, email, phone) and ``encrypt`` operator
  (names, birthday, address), stored one row at a time with SQLModel ``session.add`` (commit
  every 1,000);
- peak resident memory (ru_maxrss) of a child process ingesting ``--big-orders`` orders;
- events/s into ``POST /v1/batch`` (gzip, 100 per request) against a real uvicorn server.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _env(home: Path, pg: tuple[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDP_")}
    env["CDP_HOME"] = str(home)
    env["CDP_LOG_LEVEL"] = "warning"
    if pg is not None:
        env["CDP_DATABASE_URL"], env["CDP_KEYSTORE_URL"] = pg
    return env


def _child(code: str, env: dict[str, str]) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter (one core, its own memory), return its JSON line."""
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"child failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


INGEST = """
import json, resource
from pathlib import Path
from cdp.bootstrap import initialize
from cdp.settings import get_settings
from cdp.runtime import get_runtime, reset_runtime
initialize(get_settings()); reset_runtime()
from cdp.ingest.pipeline import ingest_file
rt = get_runtime()
out = {{}}
for kind, path in {files!r}:
    s = ingest_file(runtime=rt, kind=kind, path=Path(path))
    out[kind] = {{"read": s.read, "inserted": s.inserted, "seconds": s.seconds, "rate": s.rate}}
out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def connectors(shop: Any, home: Path, pg: tuple[str, str] | None) -> dict[str, Any]:
    files = [("customers", str(shop.customers)), ("orders", str(shop.orders))]
    return _child(INGEST.format(files=files), _env(home, pg))


def _pg_databases(url: str) -> tuple[tuple[str, str], Any]:
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    name = f"cdp_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for n in (name, name + "_keys"):
            conn.exec_driver_sql(f'CREATE DATABASE "{n}"')
    base = make_url(url)
    urls = (
        base.set(database=name).render_as_string(hide_password=False),
        base.set(database=name + "_keys").render_as_string(hide_password=False),
    )

    def drop() -> None:
        with admin.connect() as conn:
            for n in (name, name + "_keys"):
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)')
        admin.dispose()

    return urls, drop


def baseline(customers_csv: Path, home: Path, limit: int) -> dict[str, Any]:
    """presidio-anonymizer operators + SQLModel session.add, row by row."""
    from presidio_anonymizer.operators import Encrypt, Hash
    from sqlmodel import Field, Session, SQLModel, create_engine

    class BaselineCustomer(SQLModel, table=True):
        id: int | None = Field(default=None, primary_key=True)
        customer_hash: str
        email_hash: str
        phone_hash: str
        first_name: str
        last_name: str
        birthday: str
        street: str
        city: str
        postal_code: str

    engine = create_engine(f"sqlite:///{home / 'baseline.db'}")
    SQLModel.metadata.create_all(engine)
    hasher, encrypter = Hash(), Encrypt()
    hash_params = {"hash_type": "sha256"}
    enc_params = {"key": "WmZq4t7w!z%C&F)J"}  # presidio's AES key (128-bit); CBC, no MAC
    started = time.perf_counter()
    n = 0
    with customers_csv.open(encoding="utf-8") as fh, Session(engine) as session:
        for row in csv.DictReader(fh):
            session.add(
                BaselineCustomer(
                    customer_hash=hasher.operate(row["customer_id"], hash_params),
                    email_hash=hasher.operate(row["email"].strip().lower(), hash_params),
                    phone_hash=hasher.operate(row["phone"] or "-", hash_params),
                    first_name=encrypter.operate(row["first_name"] or "-", enc_params),
                    last_name=encrypter.operate(row["last_name"] or "-", enc_params),
                    birthday=encrypter.operate(row["birthday"] or "-", enc_params),
                    street=encrypter.operate(row["street"] or "-", enc_params),
                    city=encrypter.operate(row["city"] or "-", enc_params),
                    postal_code=encrypter.operate(row["postal_code"] or "-", enc_params),
                )
            )
            n += 1
            if n % 1000 == 0:
                session.commit()
            if n >= limit:
                break
        session.commit()
    seconds = time.perf_counter() - started
    return {"read": n, "seconds": seconds, "rate": n / seconds}


def http(events: int, home: Path, threads: int) -> dict[str, Any]:
    """events/s into /v1/batch (gzip, 100 a request) against a real uvicorn, one worker."""
    import httpx

    env = _env(home)
    setup = (
        "from cdp.bootstrap import initialize; from cdp.settings import get_settings;"
        "from cdp.runtime import get_runtime, reset_runtime;"
        "initialize(get_settings()); reset_runtime();"
        "from cdp.ingest.sources import create_source;"
        "import json; print(json.dumps({'key': create_source(runtime=get_runtime(),"
        " name='bench').write_key}))"
    )
    key = _child(setup, env)["key"]
    port = 18000 + os.getpid() % 1000
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "cdp.api.app:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                httpx.get(base + "/openapi.json", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        bodies = []
        for b in range(events // 100):
            batch = [
                {
                    "type": "track",
                    "messageId": str(uuid.uuid4()),
                    "userId": f"user-{(b * 100 + i) % 5000}",
                    "event": "Product Viewed",
                    "properties": {"product_id": f"P{i}", "price": 19.9, "currency": "CNY"},
                    "timestamp": "2026-10-01T12:00:00Z",
                }
                for i in range(100)
            ]
            bodies.append(gzip.compress(json.dumps({"batch": batch}).encode()))
        errors: list[int] = []
        chunks = [bodies[i::threads] for i in range(threads)]

        def send(part: list[bytes]) -> None:
            with httpx.Client(base_url=base, auth=(key, ""), timeout=60) as client:
                for body in part:
                    r = client.post(
                        "/v1/batch",
                        content=body,
                        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
                    )
                    if r.status_code != 200:
                        errors.append(r.status_code)

        started = time.perf_counter()
        workers = [threading.Thread(target=send, args=(c,)) for c in chunks]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        seconds = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    sent = len(bodies) * 100
    return {"events": sent, "seconds": seconds, "rate": sent / seconds, "errors": len(errors)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument(
        "--big-orders",
        type=int,
        default=500_000,
        help="orders in the peak-memory run (the issue's: 5000000)",
    )
    parser.add_argument(
        "--baseline-rows", type=int, default=None, help="default: as many as --customers"
    )
    parser.add_argument("--http-events", type=int, default=20_000)
    parser.add_argument("--http-threads", type=int, default=4)
    parser.add_argument("--pg-url", default=os.environ.get("CDP_BENCH_PG_URL", PG_DEFAULT))
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-http", action="store_true")
    args = parser.parse_args()

    from cdp.demo import generate_shop

    work = Path(tempfile.mkdtemp(prefix="cdp-bench-"))
    print(f"work dir {work}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    t = time.perf_counter()
    shop = generate_shop(work / "shop", customers=args.customers, orders=args.orders, seed=1)
    print(f"generated {args.customers:,} customers / {args.orders:,} orders "
          f"in {time.perf_counter() - t:.1f}s")  # fmt: skip

    sqlite = connectors(shop, work / "sqlite", None)
    print(f"SQLite      customers {sqlite['customers']['rate']:>9,.0f} rows/s   "
          f"orders {sqlite['orders']['rate']:>9,.0f} rows/s")  # fmt: skip
    if not args.skip_postgres:
        urls, drop = _pg_databases(args.pg_url)
        try:
            pg = connectors(shop, work / "pg", urls)
        finally:
            drop()
        print(f"PostgreSQL  customers {pg['customers']['rate']:>9,.0f} rows/s   "
              f"orders {pg['orders']['rate']:>9,.0f} rows/s")  # fmt: skip

    base = baseline(shop.customers, work, args.baseline_rows or args.customers)
    print(f"baseline    customers {base['rate']:>9,.0f} rows/s   (presidio hash+encrypt operators, "
          f"SQLModel session.add, {base['read']:,} rows)")  # fmt: skip
    print(
        f"            cdp/baseline on customers: {sqlite['customers']['rate'] / base['rate']:.1f}x"
    )

    if args.big_orders:
        big = generate_shop(work / "big", customers=max(1, args.big_orders // 6),
                            orders=args.big_orders, events=0, seed=2)  # fmt: skip
        size = big.orders.stat().st_size / 1e6
        mem = _child(INGEST.format(files=[("orders", str(big.orders))]), _env(work / "big-home"))
        print(f"peak memory {mem['maxrss_mb']:>9,.0f} MB   ingesting {args.big_orders:,} orders "
              f"({size:,.0f} MB file) at {mem['orders']['rate']:,.0f} rows/s")  # fmt: skip
    if not args.skip_http:
        h = http(args.http_events, work / "http", args.http_threads)
        print(
            f"HTTP        /v1/batch {h['rate']:>9,.0f} events/s ({h['events']:,} events, "
            f"100 a request, {args.http_threads} client threads, errors {h['errors']})"
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(max RSS of this bench process: {rss:,.0f} MB)")


if __name__ == "__main__":
    main()
