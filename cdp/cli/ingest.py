"""``cdp ingest customers|orders|consents|events FILE`` and ``cdp sources create|list|revoke``."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from sqlalchemy import Connection

from cdp.cli.root import app, console, styled
from cdp.ingest.pipeline import IncompleteFileError, RecordKind, Summary, ingest_file
from cdp.ingest.readers import printable_path
from cdp.ingest.sources import SourceInfo, create_source, list_sources, revoke_source
from cdp.runtime import Runtime, get_runtime

ingest_app = typer.Typer(help="Batch connectors: load customers, orders, consents, events.")
sources_app = typer.Typer(help="Sources sending events to the Segment-compatible API.")
app.add_typer(ingest_app, name="ingest")
app.add_typer(sources_app, name="sources")


def progress_bar() -> Progress:
    """A Rich progress bar with records done and the rate."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>9} rec/s"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def run_ingest(
    kind: RecordKind,
    path: Path,
    *,
    fmt: str | None = None,
    mapping: Path | None = None,
    rejects: Path | None = None,
    batch_size: int | None = None,
    total: int | None = None,
    label: str | None = None,
) -> Summary:
    """Ingest one file with a progress bar; returns the summary (used by ``cdp demo`` too)."""
    rt = get_runtime()
    started = time.perf_counter()
    with progress_bar() as bar:
        task = bar.add_task(label or kind.value, total=total, rate="")

        def advance(read: int, _bytes: int) -> None:
            elapsed = time.perf_counter() - started
            bar.update(task, completed=read, rate=f"{read / elapsed:,.0f}" if elapsed else "")

        summary = ingest_file(
            runtime=rt,
            kind=kind,
            path=path,
            fmt=fmt,
            mapping_path=mapping,
            rejects_path=rejects,
            batch_size=batch_size,
            progress=advance,
        )
        bar.update(task, completed=summary.read, total=summary.read)
    return summary


def summary_table(summaries: list[Summary]) -> Table:
    table = Table(
        "file",
        "read",
        "inserted",
        "updated",
        "duplicates",
        "expired",
        "rejected",
        "merges",
        "rec/s",
    )
    for s in summaries:
        table.add_row(
            s.kind,
            f"{s.read:,}",
            f"{s.inserted:,}",
            f"{s.updated:,}",
            f"{s.duplicates:,}",
            f"{s.expired:,}",
            f"{s.rejected:,}",
            f"{s.merges:,}",
            f"{s.rate:,.0f}",
        )
    return table


EXPIRED_NOTE = {
    "events": "not stored (retention would keep them for no one)",
    "orders": "stored without their link to a person, as anonymous sales",
}


def _print_summary(summary: Summary) -> None:
    console.print(summary_table([summary]))
    if summary.erased_named:
        console.print(
            f"{summary.erased_named} withdrawal(s) named an erased identity: recorded for the "
            "live subjects their other identities name only"
        )
    if summary.expired:
        console.print(
            f"{summary.expired} record(s) past every retention window when they arrived: "
            + EXPIRED_NOTE.get(summary.kind, "not stored")
        )
    if summary.rejects_path is not None:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(summary.reasons.items()))
        console.print(
            styled(
                (f"{summary.rejected} rejected", "yellow"),
                f" ({reasons}); see {printable_path(summary.rejects_path)}",
            )
        )


def _command(kind: RecordKind) -> None:
    @ingest_app.command(kind.value, help=f"Load {kind.value} from a CSV or JSON Lines file.")
    def command(
        file: Path = typer.Argument(..., exists=True, dir_okay=False, help="Input (.gz too)."),
        fmt: str | None = typer.Option(None, "--format", help="csv or jsonl (default: by name)."),
        mapping: Path | None = typer.Option(
            None, "--mapping", exists=True, help="Column mapping file (JSON or TOML)."
        ),
        rejects: Path | None = typer.Option(
            None, "--rejects", help="Reject file (default: FILE.rejects.jsonl)."
        ),
        batch_size: int | None = typer.Option(
            None, "--batch-size", min=1, max=100_000, help="Records per transaction."
        ),
        strict: bool = typer.Option(False, "--strict", help="Exit 1 on any rejected record."),
    ) -> None:
        try:
            summary = run_ingest(
                kind, file, fmt=fmt, mapping=mapping, rejects=rejects, batch_size=batch_size
            )
        except IncompleteFileError as exc:
            _print_summary(exc.summary)  # what was ingested before the damage; then the error
            raise
        _print_summary(summary)
        # expired records were valid and treated as retention would treat them: not a failure
        handled = summary.inserted + summary.updated + summary.duplicates + summary.expired
        if (summary.read and handled == 0) or (strict and summary.rejected):
            raise SystemExit(1)  # not typer.Exit: the root runs Click with standalone_mode off


for _kind in RecordKind:
    _command(_kind)


def _audited_source(rt: Runtime, action: str) -> Callable[[Connection, SourceInfo], None]:
    """A write key is a credential: its creation and revocation go into the audit log (under
    ``system:operator``, naming the source by id) in the transaction that makes the change,
    before the key is shown."""
    from cdp.audit.operations import change_recorder, operator
    from cdp.cli.access import cli_client

    return change_recorder(
        rt, operator(cli_client()), action=action, resource="sources", fields=_source_fields
    )


def _source_fields(source: SourceInfo) -> tuple[str, ...]:
    from cdp.audit.operations import credential_fields

    return credential_fields("source", str(source.id))


@sources_app.command("create")
def sources_create(
    name: str = typer.Argument(..., help="Source name, e.g. web or ios-app."),
) -> None:
    """Create a source and print its write key (shown once: store it in the sender's config)."""
    rt = get_runtime()
    new = create_source(runtime=rt, name=name, audit=_audited_source(rt, "create"))
    console.print(styled("source ", (new.info.name, "bold"), " created; write key (shown once):"))
    console.print(new.write_key, soft_wrap=True, highlight=False)


@sources_app.command("list")
def sources_list() -> None:
    """List sources (names and dates; keys are stored hashed and cannot be shown)."""
    table = Table("name", "created", "state")
    for s in list_sources(runtime=get_runtime()):
        state = f"revoked {s.revoked_at:%Y-%m-%d %H:%M}" if s.revoked_at else "active"
        table.add_row(s.name, f"{s.created_at:%Y-%m-%d %H:%M}", state)
    console.print(table)


@sources_app.command("revoke")
def sources_revoke(name: str = typer.Argument(..., help="The source to revoke.")) -> None:
    """Revoke a source's write key (audited)."""
    rt = get_runtime()
    revoke_source(runtime=rt, name=name, audit=_audited_source(rt, "delete"))
    console.print(f"source {name} revoked")
