"""``cdp destinations``: create, list, show, update, disable, enable, rotate-secret (admin,
purpose ``operations``).

Every command authenticates (``--token``/``CDP_TOKEN``) and is decided by the policy on the
``destinations`` resource, like ``/v1/destinations``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer
from rich.table import Table

from cdp.cli.access import TokenOption, cli_access
from cdp.cli.root import app, console, styled
from cdp.exports.destination_audit import change_recorder_for, destination_recorder
from cdp.exports.destination_changes import (
    ChangedDestination,
    DestinationChanges,
    set_enabled,
    update_destination,
)
from cdp.exports.destinations import (
    EXPORTABLE_FIELDS,
    DestinationInfo,
    DestinationSpec,
    create_destination,
    get_destination,
    list_destinations,
)
from cdp.exports.signing_secrets import MAX_OVERLAP, rotate_secret
from cdp.intervals import parse_span
from cdp.runtime import get_runtime

destinations_app = typer.Typer(help="Destinations: where exports go, for which purpose.")
app.add_typer(destinations_app, name="destinations")

OpsPurpose = Annotated[
    str, typer.Option("--purpose", help="Purpose of use (admins manage destinations for it).")
]


def _show(info: DestinationInfo) -> None:
    table = Table("field", "value", show_header=False)
    for key, value in (
        ("id", info.id),
        ("name", info.name),
        ("kind", info.kind),
        ("purpose", info.purpose),
        ("fields", ", ".join(info.fields)),
        ("minimum audience", str(info.min_audience)),
        ("url", info.url or "-"),
        ("state", "enabled" if info.enabled else "disabled"),
        ("signing secret", "stored (encrypted)" if info.has_secret else "-"),
        *(
            [("replaced secret signs until", f"{until:%Y-%m-%d %H:%M:%S} UTC")]
            if (until := info.previous_secret_until) is not None
            else []
        ),
        (
            "batch size / tries / timeout",
            f"{info.batch_size} / {info.max_attempts} / {info.timeout_seconds}s",
        ),
        ("created", f"{info.created_at:%Y-%m-%d %H:%M} by {info.created_by}"),
        ("updated", f"{info.updated_at:%Y-%m-%d %H:%M}"),
    ):
        table.add_row(key, value)
    console.print(table)


@destinations_app.command("create")
def create(
    name: str,
    kind: Annotated[str, typer.Option(help="csv | jsonl | webhook | meta | google")],
    purpose_served: Annotated[
        str, typer.Option("--serves", help="Consent purpose it serves, e.g. email_marketing.")
    ],
    fields: Annotated[
        str,
        typer.Option(
            help=f"Comma-separated fields it may receive ({', '.join(EXPORTABLE_FIELDS)})."
        ),
    ],
    min_audience: Annotated[int, typer.Option(help="Refuse exports leaving fewer.")] = 100,
    url: Annotated[str | None, typer.Option(help="Webhook URL.")] = None,
    batch_size: Annotated[int, typer.Option(help="Rows per webhook batch.")] = 500,
    max_attempts: Annotated[int, typer.Option(help="Webhook tries before a dead letter.")] = 5,
    timeout: Annotated[
        float, typer.Option(help="Webhook: the most one try takes, seconds.")
    ] = 10.0,
    token: TokenOption = None,
    purpose: OpsPurpose = "operations",
) -> None:
    """Create a destination; a webhook's signing secret is printed once."""
    rt = get_runtime()
    ctx = cli_access(
        runtime=rt, token=token, purpose=purpose, resource="destinations", action="create"
    )
    spec = DestinationSpec(
        name=name,
        kind=kind,
        purpose=purpose_served,
        fields=fields.split(","),
        min_audience=min_audience,
        url=url,
        batch_size=batch_size,
        max_attempts=max_attempts,
        timeout_seconds=timeout,
    )
    created = create_destination(
        runtime=rt,
        spec=spec,
        created_by=ctx.principal_name,
        audit=destination_recorder(rt, ctx, "create"),
    )
    _show(created.destination)
    if created.signing_secret:
        console.print(
            styled(
                "signing secret (shown once; configure it in the receiver): ",
                (created.signing_secret, "bold"),
            )
        )


@destinations_app.command("list")
def list_(token: TokenOption = None, purpose: OpsPurpose = "operations") -> None:
    """Every destination."""
    rt = get_runtime()
    cli_access(runtime=rt, token=token, purpose=purpose, resource="destinations", action="read")
    table = Table("name", "kind", "purpose", "fields", "min audience", "url", "state")
    for d in list_destinations(runtime=rt):
        table.add_row(d.name, d.kind, d.purpose, ",".join(d.fields), str(d.min_audience),
                      d.url or "-", "enabled" if d.enabled else "disabled")  # fmt: skip
    console.print(table)


@destinations_app.command("show")
def show(name: str, token: TokenOption = None, purpose: OpsPurpose = "operations") -> None:
    """One destination."""
    rt = get_runtime()
    cli_access(runtime=rt, token=token, purpose=purpose, resource="destinations", action="read")
    _show(get_destination(runtime=rt, name=name))


@destinations_app.command("update")
def update(
    name: str,
    fields: Annotated[
        str | None,
        typer.Option(help="Comma-separated fields it may receive (the whole new list)."),
    ] = None,
    min_audience: Annotated[int | None, typer.Option(help="Refuse exports leaving fewer.")] = None,
    url: Annotated[
        str | None, typer.Option(help="Webhook URL (same receiver, new address).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Rows per webhook batch.")] = None,
    max_attempts: Annotated[
        int | None, typer.Option(help="Webhook tries before a dead letter.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Webhook: the most one try takes, seconds.")
    ] = None,
    kind: Annotated[str | None, typer.Option(hidden=True)] = None,
    purpose_served: Annotated[str | None, typer.Option("--serves", hidden=True)] = None,
    token: TokenOption = None,
    purpose: OpsPurpose = "operations",
) -> None:
    """Change a destination's fields, minimum audience or webhook settings (kind and purpose
    are fixed: create a new destination for another). Widening the fields makes the next
    export of each segment to it send every eligible subject again."""
    changes = DestinationChanges(
        fields=fields.split(",") if fields is not None else None,
        min_audience=min_audience,
        url=url,
        batch_size=batch_size,
        max_attempts=max_attempts,
        timeout_seconds=timeout,
        kind=kind,
        purpose=purpose_served,
    )
    if changes == DestinationChanges():
        raise typer.BadParameter(
            "give at least one setting to change (--fields, --min-audience, --url, "
            "--batch-size, --max-attempts, --timeout)",
            param_hint="NAME",
        )
    rt = get_runtime()
    ctx = cli_access(
        runtime=rt, token=token, purpose=purpose, resource="destinations", action="write"
    )
    done = update_destination(
        runtime=rt, name=name, changes=changes, audit=change_recorder_for(rt, ctx)
    )
    _show(done.destination)
    _changed(done)
    if done.resend:
        console.print(
            f"newly allowed: {', '.join(done.added_fields)}; the next export of each segment to "
            f"{done.destination.name} sends every eligible subject again, with them"
        )


@destinations_app.command("disable")
def disable(name: str, token: TokenOption = None, purpose: OpsPurpose = "operations") -> None:
    """Switch a destination off: exports to it are refused and its schedules skipped (its
    sync state, recipients ledger and secret are kept)."""
    _switch(name, enabled=False, token=token, purpose=purpose)


@destinations_app.command("enable")
def enable(name: str, token: TokenOption = None, purpose: OpsPurpose = "operations") -> None:
    """Switch a disabled destination back on: exports run to it again."""
    _switch(name, enabled=True, token=token, purpose=purpose)


def _switch(name: str, *, enabled: bool, token: str | None, purpose: str) -> None:
    rt = get_runtime()
    ctx = cli_access(
        runtime=rt, token=token, purpose=purpose, resource="destinations", action="write"
    )
    done = set_enabled(runtime=rt, name=name, enabled=enabled, audit=change_recorder_for(rt, ctx))
    state = "enabled" if enabled else "disabled"
    if done.changed:
        console.print(f"destination {done.destination.name} is {state}")
    else:
        console.print(f"destination {done.destination.name} was already {state}: nothing changed")


def _changed(done: ChangedDestination) -> None:
    if done.changed:
        console.print(f"changed: {', '.join(done.changed)}")
    else:
        console.print("nothing changed: every setting given already had that value")


@destinations_app.command("rotate-secret")
def rotate(
    name: str,
    overlap: Annotated[
        str,
        typer.Option(
            help="How long the old secret keeps signing beside the new one: 0 (a leaked "
            "secret), 30m, 24h, up to 7d.",
        ),
    ] = "24h",
    token: TokenOption = None,
    purpose: OpsPurpose = "operations",
) -> None:
    """Give a webhook destination a new signing secret (printed once)."""
    try:
        seconds = parse_span(overlap, at_most=int(MAX_OVERLAP.total_seconds()))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--overlap") from None
    rt = get_runtime()
    ctx = cli_access(
        runtime=rt, token=token, purpose=purpose, resource="destinations", action="write"
    )
    rotated = rotate_secret(
        runtime=rt,
        name=name,
        overlap=timedelta(seconds=seconds),
        audit=destination_recorder(rt, ctx, "write"),
    )
    console.print(styled("new signing secret: ", (rotated.secret, "bold")))
    if rotated.previous_until is None:
        console.print("the old secret signs nothing from now on")
    else:
        console.print(
            f"the old secret also signs until {rotated.previous_until:%Y-%m-%d %H:%M:%S} UTC: "
            "install the new one in the receiver before then"
        )
