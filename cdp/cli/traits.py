"""``cdp traits compute``: recompute every subject's traits (a batch job; prints counts only)."""

from __future__ import annotations

import json

import typer

from cdp.cli.root import app, console, styled
from cdp.runtime import get_runtime
from cdp.traits.compute import compute_traits

traits_app = typer.Typer(help="Traits: facts, RFM, lifecycle, value layers, loyalty, CLV.")
app.add_typer(traits_app, name="traits")


@traits_app.command("compute")
def compute(
    no_clv: bool = typer.Option(False, "--no-clv", help="Skip the CLV fit and predictions."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Recompute order facts, RFM, lifecycle, value layers, tiers, points and CLV now."""
    report = compute_traits(runtime=get_runtime(), with_clv=not no_clv)
    if as_json:
        console.print_json(json.dumps(report.__dict__))
        return
    console.print(f"traits of {report.subjects:,} subjects computed")
    console.print(f"loyalty tier changes: {report.tier_changes:,}")
    console.print(
        "points ledger lines: " + ", ".join(f"{k} {v:,}" for k, v in report.points_lines.items())
    )
    if report.clv_subjects is not None:
        console.print(f"CLV predictions: {report.clv_subjects:,} buyers")
    elif report.clv_skipped:
        console.print(styled(("CLV skipped", "yellow"), f": {report.clv_skipped}"))
    console.print("seconds: " + ", ".join(f"{k} {v}" for k, v in report.seconds.items()))
