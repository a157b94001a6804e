"""``cdp generate`` (a synthetic shop's files) and ``cdp demo`` (the whole product, end to end:
generate, ingest, traits, principals, segments, exports, audited reads, erasure, audit)."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import typer
from rich.table import Table

from cdp.cli.ingest import run_ingest, summary_table
from cdp.cli.paths import plain_file_or_absent
from cdp.cli.root import app, console
from cdp.demo import DEFAULT_END, generate_shop
from cdp.demo.generator import SHOP_FILES
from cdp.demo.pipeline import (
    DEFAULT_CUSTOMERS,
    DEFAULT_ORDERS,
    STEPS,
    DemoContext,
    register_product_steps,
    run_demo,
)
from cdp.errors import InvalidInputError
from cdp.ingest.pipeline import RecordKind
from cdp.runtime import get_runtime, reset_runtime
from cdp.settings import get_settings

register_product_steps()


def _end_date(value: str | None) -> date | None:
    """``--end``: an ISO date (YYYY-MM-DD) between 1971 and 9998."""
    if value is None:
        return None
    try:
        end = date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter("an ISO date, YYYY-MM-DD", param_hint="'--end'") from None
    if not date(1971, 1, 1) <= end <= date(9998, 12, 31):
        raise typer.BadParameter("a date between 1971-01-01 and 9998-12-31", param_hint="'--end'")
    return end


@app.command()
def generate(
    customers: int = typer.Option(DEFAULT_CUSTOMERS, min=1, help="Number of customers."),
    orders: int = typer.Option(DEFAULT_ORDERS, min=0, help="Number of orders."),
    out: Path = typer.Option(Path("shop"), "--out", help="Output directory."),
    seed: int = typer.Option(7, help="Random seed (same seed, same files)."),
    end: str | None = typer.Option(
        None,
        "--end",
        help=f"Last day of the shop's two years (default {DEFAULT_END.isoformat()}: fixed, so "
        "the same seed writes the same files whatever the day).",
    ),
) -> None:
    """Write a synthetic shop: customers.csv, orders.jsonl, consents.csv, events.jsonl."""
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"--out: {out} is not a directory", field="--out")
    for name in SHOP_FILES:
        plain_file_or_absent(out / name, "--out")
    started = time.perf_counter()
    shop = generate_shop(out, customers=customers, orders=orders, seed=seed, end=_end_date(end))
    console.print(
        f"wrote {shop.customer_count:,} customers, {shop.order_count:,} orders, "
        f"{shop.consent_count:,} consent entries and {shop.event_count:,} events to {out} "
        f"in {time.perf_counter() - started:.1f}s"
    )


def _initialize() -> None:
    from cdp.bootstrap import initialize

    initialize(get_settings())
    reset_runtime()


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _ingest(kind: str, path: Path, expected: int | None) -> Any:
    return run_ingest(RecordKind(kind), path, total=expected)


def _totals() -> Table:
    rt = get_runtime()
    table = Table("in the profile store", "count", show_header=True)
    queries = {
        "subjects (customers and visitors)": "SELECT count(*) FROM subjects",
        "identity tokens": "SELECT count(*) FROM identities",
        "profiles with encrypted PII": "SELECT count(*) FROM pii_records",
        "orders": "SELECT count(*) FROM orders",
        "consent ledger entries": "SELECT count(*) FROM consent_events",
        "behaviour events": "SELECT count(*) FROM events",
        "merges": "SELECT count(*) FROM subject_merges",
    }
    with rt.data_engine.connect() as conn:
        for label, sql in queries.items():
            table.add_row(label, f"{conn.execute(sa.text(sql)).scalar_one():,}")
        revenue = conn.execute(
            sa.text("SELECT coalesce(sum(value_base), 0) FROM orders WHERE status = 'completed'")
        ).scalar_one()
    table.add_row(f"completed revenue ({rt.settings.base_currency})", f"{revenue:,.2f}")
    return table


def _steps_table(ctx: DemoContext) -> Table:
    table = Table("step", "seconds", "what it did", show_header=True)
    table.columns[2].overflow = "fold"
    for step in STEPS:
        if step.name in ctx.seconds and step.name in ctx.done:
            table.add_row(step.name, f"{ctx.seconds[step.name]:.1f}", ctx.done.get(step.name, ""))
    return table


@app.command()
def demo(
    customers: int = typer.Option(DEFAULT_CUSTOMERS, min=1, help="Number of customers."),
    orders: int = typer.Option(DEFAULT_ORDERS, min=0, help="Number of orders."),
    seed: int = typer.Option(7, help="Random seed."),
    out: Path | None = typer.Option(None, "--out", help="Shop directory (default HOME/demo)."),
    end: str | None = typer.Option(
        None, "--end", help="Last day of the shop's two years (default: yesterday, UTC)."
    ),
) -> None:
    """Walk the whole product on a generated shop: ingest, traits, segments, exports, audited
    reads, an erasure and the audit trail (tokens, reports and checkpoint in CDP_HOME/demo)."""
    settings = get_settings()
    started = time.perf_counter()
    ctx = DemoContext(
        out_dir=out or settings.home / "demo",
        customers=customers,
        orders=orders,
        seed=seed,
        end=_end_date(end),
        say=_say,
        ingest=_ingest,
        initialize=_initialize,
        home=settings.home,
    )
    run_demo(ctx)
    console.print(summary_table(ctx.results.get("ingest", [])))
    console.print(_totals())
    for label, value in ctx.facts.items():
        console.print(f"{label}: {value}")
    console.print(_steps_table(ctx))
    console.print(f"demo finished in {time.perf_counter() - started:.1f}s; data in {settings.home}")
