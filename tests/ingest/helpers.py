"""Helpers for ingestion tests: write small input files, dump tables, count rows."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ValidationError

from cdp.db.all_models import metadata
from cdp.runtime import Runtime

CUSTOMER_HEADER = [
    "customer_id", "email", "phone", "first_name", "last_name", "birthday", "gender",
    "street", "city", "postal_code", "state", "country", "created_at",
]  # fmt: skip


UNUSUAL_TEXT = (
    "a\x00b", "\x00", "a\ud800", "\udfff", "a\tb", "a\nb", "a\r\nb", "\x1b[1m", "a\x7f",
    "a\x85b", "\xa0a", "a\u200bb", "a\u2028b", "\ufeffa", "😀", "a\ud83d\ude00",
)  # fmt: skip
"""Strings a plain export does not hold (control characters, lone surrogates, separators, format
characters), for the property tests of the fast paths: the model decides each."""


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


def fast_matches_model(
    fast: Callable[[dict[str, Any], dict[str, Any]], BaseModel | None],
    model: type[BaseModel],
    data: dict[str, Any],
    context: dict[str, Any],
) -> BaseModel | None:
    """Check a fast path against its model on ``data``: it may only accept what the model
    accepts, and what it builds must equal the model's record in every field, type and nested
    model (fields set included). The record when the fast path took ``data``, else None."""
    got = fast(data, context)
    try:
        expected = model.model_validate(data, context=context)
    except ValidationError:
        assert got is None, "the fast path accepted a record the model rejects"
        return None
    if got is None:
        return None
    _same_model(got, expected)
    assert got.model_dump() == expected.model_dump()
    return got


def _same_model(got: Any, expected: Any) -> None:
    if isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected)
        for g, e in zip(got, expected, strict=True):
            _same_model(g, e)
        return
    if not isinstance(expected, BaseModel):
        assert repr(got) == repr(expected)  # same value and type
        return
    assert type(got) is type(expected)
    assert got.model_fields_set == expected.model_fields_set
    assert got.__dict__.keys() == expected.__dict__.keys()
    for name, value in expected.__dict__.items():
        _same_model(got.__dict__[name], value)
