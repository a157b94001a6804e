"""``cdp destinations``: create, list, show, rotate-secret (admin, purpose ``operations``).

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
from cdp.exports.destination_audit import destination_recorder
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
    table = Table("name", "kind", "purpose", "fields", "min audience", "url")
    for d in list_destinations(runtime=rt):
        table.add_row(d.name, d.kind, d.purpose, ",".join(d.fields), str(d.min_audience),
                      d.url or "-")  # fmt: skip
    console.print(table)


@destinations_app.command("show")
def show(name: str, token: TokenOption = None, purpose: OpsPurpose = "operations") -> None:
    """One destination."""
    rt = get_runtime()
    cli_access(runtime=rt, token=token, purpose=purpose, resource="destinations", action="read")
    _show(get_destination(runtime=rt, name=name))


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
