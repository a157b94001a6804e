"""``cdp principals``: create (prints the token once), list (never shows tokens), revoke.

These commands manage credentials, so they need what ``cdp init`` needs: direct access to the
installation (its database and key file). That is also how the first admin is created.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import Connection

from cdp.access import principal_audit
from cdp.access import principals as service
from cdp.access.principals import PrincipalInfo
from cdp.audit.operations import operator
from cdp.cli.access import cli_client
from cdp.cli.durations import parse_duration
from cdp.cli.root import app, console, err_console, styled
from cdp.clock import utcnow
from cdp.runtime import Runtime, get_runtime

principals_app = typer.Typer(help="People and services that call cdp: create, list, revoke.")
app.add_typer(principals_app, name="principals")


@principals_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Unique name, e.g. alice or crm-sync.")],
    role: Annotated[list[str], typer.Option("--role", help="A role (repeat for several).")],
    kind: Annotated[str, typer.Option(help="person or service.")] = "person",
    expires_in: Annotated[
        str | None, typer.Option("--expires-in", help="Token lifetime, e.g. 30d or 12h.")
    ] = None,
) -> None:
    """Create a principal and print its bearer token (shown this once; only its hash is kept).

    Audited under ``system:operator`` (the principal's id and roles) before the token is shown."""
    rt = get_runtime()
    made = service.create(
        runtime=rt,
        name=name,
        roles=role,
        kind=kind,
        expires_in=(
            parse_duration(
                expires_in,
                option="--expires-in",
                most=timedelta(days=3650),
                too_long="a token lives at most 10 years (3650d)",
            )
            if expires_in
            else None
        ),
        audit=principal_recorder(rt, "create"),
    )
    p = made.principal
    expiry = p.expires_at.isoformat() if p.expires_at else "never"
    err_console.print(
        styled(
            f"created {p.kind} ",
            (p.name, "bold"),
            f" (id {p.id}) with role(s) {', '.join(p.roles)}; "
            f"expires: {expiry}. The token below is shown only once:",
        )
    )
    typer.echo(made.token)


@principals_app.command("list")
def list_() -> None:
    """List principals with roles and state (tokens are never stored, so never shown)."""
    now = utcnow()
    table = Table("name", "id", "kind", "roles", "state", "created", "expires")
    for p in service.list_principals(runtime=get_runtime()):
        table.add_row(
            p.name,
            p.id,
            p.kind,
            ",".join(p.roles),
            p.state(now),
            p.created_at.isoformat(timespec="seconds"),
            p.expires_at.isoformat(timespec="seconds") if p.expires_at else "-",
        )
    console.print(table)


@principals_app.command("revoke")
def revoke(name: Annotated[str, typer.Argument(help="The principal to revoke.")]) -> None:
    """Revoke a principal's token now; later requests with it get 401 (audited)."""
    rt = get_runtime()
    p = service.revoke(runtime=rt, name=name, audit=principal_recorder(rt, "delete"))
    console.print(f"revoked {p.name} at {p.revoked_at.isoformat() if p.revoked_at else '?'}")


def principal_recorder(rt: Runtime, action: str) -> Callable[[Connection, PrincipalInfo], None]:
    """The change's audit record under ``system:operator``, in the transaction that makes it."""
    return principal_audit.principal_recorder(rt, operator(cli_client()), action)
