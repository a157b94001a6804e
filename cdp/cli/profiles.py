"""``cdp profiles``: the CLI door to profiles. Same policy, same field-level views and the same
audit records as the API: every command takes ``--token``/``CDP_TOKEN`` and ``--purpose``."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cdp.cli.access import PurposeOption, TokenOption, cli_access
from cdp.cli.root import app
from cdp.errors import InvalidInputError
from cdp.profiles import reads
from cdp.profiles.views import parse_fields
from cdp.runtime import get_runtime

profiles_app = typer.Typer(help="Read profiles (authorised by policy, recorded in the audit log).")
app.add_typer(profiles_app, name="profiles")

FieldsOption = Annotated[
    str | None, typer.Option("--fields", help="Comma-separated fields (default: all you may see).")
]
# the API's bounds (cdp/api/profiles.py): a larger page is refused, not silently shortened
LimitOption = Annotated[
    int | None,
    typer.Option(
        "--limit",
        min=1,
        max=reads.MAX_PAGE_SIZE,
        help=f"Page size (at most {reads.MAX_PAGE_SIZE}).",
    ),
]
CursorOption = Annotated[
    int | None, typer.Option("--cursor", min=0, max=reads.CURSOR_MAX, help="next_cursor of a page.")
]


def _print(payload: object) -> None:
    typer.echo(json.dumps(payload, indent=2, default=str, ensure_ascii=False))


@profiles_app.command("show")
def show(
    subject_id: Annotated[str, typer.Argument(help="The subject id.")],
    token: TokenOption = None,
    purpose: PurposeOption = None,
    fields: FieldsOption = None,
) -> None:
    """Print one profile as JSON: the fields your role may read for your purpose."""
    rt = get_runtime()
    ctx = cli_access(
        runtime=rt,
        token=token,
        purpose=purpose,
        resource="profile",
        action="read",
        subject_ids=[subject_id],
    )
    view = reads.get_profile(
        runtime=rt, ctx=ctx, subject_id=subject_id, fields=parse_fields(fields)
    )
    _print(view.model_dump(mode="json", exclude_unset=True))


@profiles_app.command("find")
def find(
    email: Annotated[str | None, typer.Option("--email")] = None,
    phone: Annotated[str | None, typer.Option("--phone")] = None,
    customer_id: Annotated[str | None, typer.Option("--customer-id")] = None,
    token: TokenOption = None,
    purpose: PurposeOption = None,
    fields: FieldsOption = None,
) -> None:
    """Find profiles by exactly one of --email, --phone, --customer-id (token index lookup)."""
    chosen = reads.one_identity(email=email, phone=phone, customer_id=customer_id)
    if chosen is None:
        raise InvalidInputError("give exactly one of --email, --phone or --customer-id")
    rt = get_runtime()
    ctx = cli_access(runtime=rt, token=token, purpose=purpose, resource="profile", action="read")
    kind, value = chosen
    views = reads.find_profiles(
        runtime=rt, ctx=ctx, kind=kind, value=value, fields=parse_fields(fields)
    )
    _print({"items": [v.model_dump(mode="json", exclude_unset=True) for v in views]})


@profiles_app.command("orders")
def orders(
    subject_id: Annotated[str, typer.Argument(help="The subject id.")],
    token: TokenOption = None,
    purpose: PurposeOption = None,
    limit: LimitOption = None,
    cursor: CursorOption = None,
) -> None:
    """Print a page of the subject's orders as JSON."""
    rt = get_runtime()
    ctx = cli_access(
        runtime=rt,
        token=token,
        purpose=purpose,
        resource="data:behaviour",
        action="read",
        subject_ids=[subject_id],
    )
    page = reads.list_orders(runtime=rt, ctx=ctx, subject_id=subject_id, limit=limit, cursor=cursor)
    _print(page.model_dump(mode="json"))


@profiles_app.command("consent")
def consent(
    subject_id: Annotated[str, typer.Argument(help="The subject id.")],
    token: TokenOption = None,
    purpose: PurposeOption = None,
    limit: LimitOption = None,
    cursor: CursorOption = None,
) -> None:
    """Print a page of the subject's consent ledger as JSON."""
    rt = get_runtime()
    ctx = cli_access(
        runtime=rt,
        token=token,
        purpose=purpose,
        resource="data:consent",
        action="read",
        subject_ids=[subject_id],
    )
    page = reads.list_consent(
        runtime=rt, ctx=ctx, subject_id=subject_id, limit=limit, cursor=cursor
    )
    _print(page.model_dump(mode="json"))
