"""``cdp metrics``: shop metrics over a period, with an optional HTML chart (aggregates only)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer
from rich.table import Table

from cdp.cli.paths import writable, write_file
from cdp.cli.root import app, console
from cdp.clock import utcnow
from cdp.errors import InvalidInputError
from cdp.runtime import get_runtime
from cdp.traits.charts import metrics_html
from cdp.traits.metrics import shop_metrics


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1%}"


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:,.2f}"


def parse_day(value: str, option: str) -> datetime:
    try:
        day = datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        raise InvalidInputError("expected a date YYYY-MM-DD", field=option) from None
    if not 1900 <= day.year <= 2100:
        raise InvalidInputError("expected a date within 1900-2100", field=option)
    return day.replace(tzinfo=UTC)


@app.command("metrics")
def metrics(
    start: str | None = typer.Option(None, "--from", help="First day (default: a year ago)."),
    end: str | None = typer.Option(None, "--to", help="Day after the period (default: today)."),
    chart: Path | None = typer.Option(None, "--chart", help="Write the charts to an .html file."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """Repurchase rate, frequency, AOV, churn, new vs returning, cohort matrix and RFM grid."""
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    to = parse_day(end, "--to") if end else today
    frm = parse_day(start, "--from") if start else to - timedelta(days=365)
    if chart is not None and chart.suffix.lower() not in (".html", ".htm"):
        raise InvalidInputError(
            "charts are written as HTML with inline SVG (.html)", field="--chart"
        )
    if chart is not None:
        writable(chart, "--chart")
    m = shop_metrics(runtime=get_runtime(), start=frm, end=to)
    if chart is not None:
        write_file(chart, metrics_html(m), "--chart", private=False)  # aggregates only
    if as_json:
        console.print_json(json.dumps(m.to_dict()))
    else:
        table = Table("metric", "value", title=f"{frm:%Y-%m-%d} to {to:%Y-%m-%d} (end exclusive)")
        for name, value in (
            ("active customers", f"{m.active_customers:,}"),
            ("new / returning", f"{m.new_customers:,} / {m.returning_customers:,}"),
            ("orders", f"{m.orders:,}"),
            ("revenue", _num(m.revenue)),
            ("new / returning revenue", f"{_num(m.new_revenue)} / {_num(m.returning_revenue)}"),
            ("AOV", _num(m.aov)),
            ("purchase frequency", _num(m.purchase_frequency)),
            ("repurchase rate", _pct(m.repurchase_rate)),
            ("churn rate", _pct(m.churn_rate)),
        ):
            table.add_row(name, value)
        console.print(table)
        console.print(f"cohorts: {len(m.cohorts)}")
    if chart is not None:
        console.print(f"chart written to {chart}")
