"""Helpers for ingestion tests: write small input files, dump tables, count rows."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cdp.db.all_models import metadata
from cdp.runtime import Runtime

CUSTOMER_HEADER = [
    "customer_id", "email", "phone", "first_name", "last_name", "birthday", "gender",
    "street", "city", "postal_code", "state", "country", "created_at",
]  # fmt: skip


def write_csv(path: Path, rows: Iterable[Mapping[str, Any]], header: list[str]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=header, lineterminator="\n")
        w.writeheader()
        for row in rows:
            w.writerow({k: row.get(k, "") for k in header})
    return path


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def customer(n: int, **over: Any) -> dict[str, Any]:
    row = {
        "customer_id": f"C{n:05d}",
        "email": f"person{n}@example.com",
        "phone": f"+1 415 555 {n % 10000:04d}",
        "first_name": f"Given{n}",
        "last_name": f"Family{n}",
        "birthday": "1990-04-01",
        "gender": "female",
        "street": f"{n} Main St",
        "city": "Springfield",
        "postal_code": "94107",
        "state": "CA",
        "country": "US",
        "created_at": "2025-01-02T03:04:05Z",
    }
    row.update(over)
    return row


def order(n: int, customer_id: str | None = "C00001", **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "order_id": f"O{n:06d}",
        "customer_id": customer_id,
        "ordered_at": "2025-03-04T05:06:07Z",
        "total": "100.50",
        "currency": "USD",
        "discount": "0",
        "coupon": None,
        "status": "completed",
        "items": [
            {"product_id": "P1", "sku": "P1-S", "category": "apparel", "name": "Shirt",
             "price": "100.50", "quantity": 1}
        ],
    }  # fmt: skip
    row.update(over)
    return row


def dump_tables(rt: Runtime) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every data table, sorted (for whole-database comparisons)."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with rt.data_engine.connect() as conn:
        for table in metadata.sorted_tables:
            rows = conn.execute(sa.select(table)).all()
            out[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return out


def count(rt: Runtime, table: str, where: str = "") -> int:
    with rt.data_engine.connect() as conn:
        return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table} {where}").scalar_one())
