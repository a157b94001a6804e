"""``cdp export``: run an export with a progress bar, show one, and manage schedules.

``cdp export run SEGMENT --destination NAME`` authenticates (``--token``/``CDP_TOKEN``) and runs
for the destination's purpose (``--purpose`` defaults to it), exactly like ``POST /v1/exports``.
It exits 1 when the run ended with deliveries undone (dead-lettered webhook batches: status
``partial``), after printing the counts; 0 when everything was delivered.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from cdp.cli.access import TokenOption, cli_access
from cdp.cli.root import app, console, err_console, styled
from cdp.errors import NotFoundError
from cdp.exports.destinations import get_destination
from cdp.exports.records import get_export
from cdp.exports.run import run_export
from cdp.exports.schedule import create_schedule, delete_schedule, list_schedules, parse_every
from cdp.runtime import get_runtime

export_app = typer.Typer(help="Exports: segments to destinations, consent checked at send time.")
schedule_app = typer.Typer(help="Scheduled exports, run by `cdp serve`.")
app.add_typer(export_app, name="export")
export_app.add_typer(schedule_app, name="schedule")

PurposeOpt = Annotated[
    str | None,
    typer.Option("--purpose", help="Purpose of use; default: the destination's purpose."),
]
DestinationOpt = Annotated[str, typer.Option("--destination", "-d", help="Destination name.")]


@export_app.command("run")
def run(
    segment: str,
    destination: DestinationOpt,
    full: Annotated[bool, typer.Option(help="Resend every eligible subject.")] = False,
    token: TokenOption = None,
    purpose: PurposeOpt = None,
) -> None:
    """Export SEGMENT to a destination now and print its manifest counts."""
    rt = get_runtime()
    dest = get_destination(runtime=rt, name=destination)
    ctx = cli_access(
        runtime=rt, token=token, purpose=purpose or dest.purpose, resource="exports", action="run"
    )
    tasks: dict[str, TaskID] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as bar:

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(f"{phase:>6}", total=total)
            bar.update(tasks[phase], completed=done)

        result = run_export(
            runtime=rt,
            ctx=ctx,
            segment=segment,
            destination=destination,
            full=full,
            progress=progress,
        )
    table = Table("count", "subjects")
    for key, value in result.counts.as_dict().items():
        table.add_row(key.replace("_", " "), str(value))
    console.print(table)
    console.print(f"export {result.export_id}: {result.status}")
    for out in result.manifest["outputs"]:
        console.print(
            f"  {out['op']}: {out['rows']} rows -> {out['path']} (sha256 {out['sha256']})"
        )
    adds, removes = result.counts.failed_delivery, result.counts.removes_failed
    if adds or removes:  # the run ended, but not everything reached the destination
        err_console.print(
            styled(
                (f"export {result.export_id} {result.status}", "yellow"),
                f": {adds + removes} subject(s) not delivered (adds {adds}, removes {removes}: "
                "dead-lettered webhook batches); the next run sends them again",
            )
        )
        raise typer.Exit(1)


@export_app.command("show")
def show(export_id: str, token: TokenOption = None, purpose: PurposeOpt = None) -> None:
    """Print an export's manifest (JSON)."""
    rt = get_runtime()
    cli_access(
        runtime=rt, token=token, purpose=purpose or "marketing", resource="exports", action="read"
    )
    view = get_export(runtime=rt, export_id=export_id)
    shown = dict(view.manifest or {"id": view.id, "status": view.status})
    if view.files_deleted_at is not None:  # retention deleted them (CDP_EXPORT_FILE_DAYS)
        shown["files_deleted_at"] = view.files_deleted_at.isoformat()
    if view.undelivered:  # dead-lettered webhook batches: how each one's last try ended
        shown["undelivered"] = [asdict(u) for u in view.undelivered]
    console.print_json(json.dumps(shown))


@schedule_app.command("create")
def schedule_create(
    name: str,
    segment: Annotated[str, typer.Option(help="Segment to export.")],
    destination: DestinationOpt,
    every: Annotated[str, typer.Option(help="Interval: 30m, 6h, 1d.")],
    token: TokenOption = None,
    purpose: PurposeOpt = None,
) -> None:
    """Schedule an export; it runs as you, every EVERY, under `cdp serve`."""
    rt = get_runtime()
    dest = get_destination(runtime=rt, name=destination)
    ctx = cli_access(
        runtime=rt,
        token=token,
        purpose=purpose or dest.purpose,
        resource="exports",
        action="create",
    )
    info = create_schedule(
        runtime=rt,
        ctx=ctx,
        name=name,
        segment=segment,
        destination=destination,
        every_seconds=parse_every(every),
    )
    console.print(f"schedule {info.name}: next run {info.next_run_at:%Y-%m-%d %H:%M:%S} UTC")


@schedule_app.command("list")
def schedule_list(token: TokenOption = None, purpose: PurposeOpt = None) -> None:
    """Every schedule with its last run."""
    rt = get_runtime()
    cli_access(
        runtime=rt, token=token, purpose=purpose or "marketing", resource="exports", action="read"
    )
    table = Table("name", "segment", "destination", "every", "runs as", "next", "last status")
    for s in list_schedules(runtime=rt):
        table.add_row(s.name, s.segment, s.destination, f"{s.every_seconds}s", s.principal_name,
                      f"{s.next_run_at:%Y-%m-%d %H:%M}", s.last_status or "-")  # fmt: skip
    console.print(table)


@schedule_app.command("delete")
def schedule_delete(name: str, token: TokenOption = None, purpose: PurposeOpt = None) -> None:
    """Delete a schedule (needs the permission to create exports for PURPOSE)."""
    rt = get_runtime()
    schedules = {s.name: s for s in list_schedules(runtime=rt)}
    target = schedules.get(name)
    if target is None:
        # whoever may list the schedules may learn that there is no such one: not found, not
        # "forbidden" under a purpose nobody asked for
        cli_access(
            runtime=rt,
            token=token,
            purpose=purpose or "marketing",
            resource="exports",
            action="read",
        )
        raise NotFoundError(f"no schedule named {name!r}")
    cli_access(
        runtime=rt,
        token=token,
        purpose=purpose or get_destination(runtime=rt, name=target.destination).purpose,
        resource="exports",
        action="create",
    )
    delete_schedule(runtime=rt, name=name)
    console.print(f"schedule {name} deleted")
