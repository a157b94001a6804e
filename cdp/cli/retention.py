"""``cdp retention run [--dry-run]``: apply the retention rules once (``cdp serve`` runs the same
function, :func:`cdp.privacy.retention.run_retention`, daily).

An operations job: role ``admin``, ``--purpose operations``. ``--dry-run`` prints the counts and
changes nothing.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cdp.cli.access import PurposeOption, TokenOption, cli_access
from cdp.cli.root import app, console
from cdp.privacy.retention import run_retention
from cdp.runtime import get_runtime

retention_app = typer.Typer(help="Retention: remove what is past its purpose's window.")
app.add_typer(retention_app, name="retention")


@retention_app.command("run")
def retention_run(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count; change nothing.")] = False,
    token: TokenOption = None,
    purpose: PurposeOption = None,
) -> None:
    """Delete or anonymise what is past each purpose's window, and inactive subjects."""
    rt = get_runtime()
    cli_access(runtime=rt, token=token, purpose=purpose, resource="ops", action="run")
    report = run_retention(runtime=rt, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    table = Table("what", verb)
    for name, n in sorted(report.rows.items()):
        table.add_row(f"{name} rows past their window", str(n))
    table.add_row("expired access packages", str(report.packages))
    table.add_row("expired export files", str(report.export_files))
    table.add_row("inactive subjects (erased)", str(report.inactive_subjects))
    console.print(table)
