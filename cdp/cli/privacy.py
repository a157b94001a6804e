"""``cdp privacy request|list|show|verify|reject|extend|run|package|lift``.

The DPO's commands (role ``dpo``, ``--purpose privacy_request``); each authenticates like an API
request, and running a request or writing its package is audited.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cdp.access.context import AccessContext
from cdp.cli.access import PurposeOption, TokenOption, cli_access
from cdp.cli.paths import writable, write_file
from cdp.cli.root import app, console, styled
from cdp.errors import InvalidInputError
from cdp.privacy import request_filing, request_lifecycle, request_list, runner
from cdp.privacy.requests import RequestStatus, RequestView
from cdp.profiles.reads import one_identity
from cdp.runtime import get_runtime

privacy_app = typer.Typer(help="Data-subject requests: access, erasure, rectification, ...")
app.add_typer(privacy_app, name="privacy")

RESOURCE = "privacy_requests"
IdArg = Annotated[str, typer.Argument(help="The request id (pr_...).")]


def _show(view: RequestView) -> None:
    console.print(styled((view.id, "bold"), f" {view.type} — {view.status}"))
    console.print(f"received {view.received_at.isoformat()}  due {view.deadline.isoformat()}")
    if view.extended_until:
        console.print(f"extended: {view.extension_reason}")
    console.print(f"subject: {view.subject_id or '(not found)'}")
    if view.outcome is not None:
        console.print_json(json.dumps(view.outcome))
    steps = Table("at", "status", "by", "note")
    for s in view.steps:
        steps.add_row(s.at.isoformat(), s.status, s.actor, s.note or "")
    console.print(steps)


def _ctx(action: str, token: str | None, purpose: str | None) -> AccessContext:
    return cli_access(
        runtime=get_runtime(), token=token, purpose=purpose, resource=RESOURCE, action=action
    )


@privacy_app.command("request")
def request(
    kind: Annotated[
        str,
        typer.Argument(
            help="access, portability, erasure, rectification, restriction or objection"
        ),
    ],
    email: Annotated[str | None, typer.Option("--email")] = None,
    phone: Annotated[str | None, typer.Option("--phone")] = None,
    customer_id: Annotated[str | None, typer.Option("--customer-id")] = None,
    correct: Annotated[
        list[str] | None, typer.Option("--correct", help="field=value (rectification).")
    ] = None,
    token: TokenOption = None,
    purpose: PurposeOption = None,
) -> None:
    """File a request for the person with this identity."""
    rt = get_runtime()
    ctx = cli_access(runtime=rt, token=token, purpose=purpose, resource=RESOURCE, action="create")
    # an empty option (--email "") names nobody: not given
    chosen = one_identity(email=email or None, phone=phone or None, customer_id=customer_id or None)
    if chosen is None:
        raise InvalidInputError("give exactly one of --email, --phone, --customer-id")
    corrections = {}
    for item in correct or []:
        field, sep, value = item.partition("=")
        if not sep:
            raise InvalidInputError("--correct takes field=value", field="--correct")
        corrections[field.strip()] = value
    view = request_filing.create(
        runtime=rt,
        type=kind,
        identity_kind=chosen[0],
        identity_value=chosen[1],
        ctx=ctx,
        corrections=corrections or None,
    )
    _show(view)


@privacy_app.command("list")
def list_cmd(
    status: Annotated[
        RequestStatus | None,
        typer.Option("--status", help="Only requests in this status (checked before any read)."),
    ] = None,
    overdue: Annotated[bool, typer.Option("--overdue", help="Only open and late.")] = False,
    limit: Annotated[
        int,
        typer.Option(
            "--limit",
            min=1,
            max=request_list.MAX_PAGE_SIZE,
            help="Requests per page (at most 500).",
        ),
    ] = request_list.DEFAULT_PAGE_SIZE,
    cursor: Annotated[
        str | None, typer.Option("--cursor", help="Where the previous page ended.")
    ] = None,
    token: TokenOption = None,
    purpose: PurposeOption = None,
) -> None:
    """Requests, most urgent first, a page at a time (the end of a page says how to get the
    next one)."""
    ctx = _ctx("read", token, purpose)
    page = request_list.read_page(
        runtime=get_runtime(),
        ctx=ctx,
        status=None if status is None else status.value,
        overdue_only=overdue,
        limit=limit,
        cursor=cursor,
    )
    table = Table("id", "type", "status", "received", "deadline", "subject")
    table.columns[0].min_width = 27  # ids are copied into other commands: never cut
    table.columns[0].no_wrap = True
    for v in page.items:
        table.add_row(
            v.id,
            v.type,
            v.status,
            v.received_at.date().isoformat(),
            v.deadline.date().isoformat(),
            v.subject_id or "",
        )
    console.print(table)
    if page.next_cursor is not None:
        console.print(
            f"{len(page.items)} shown; more follow: run it again with --cursor {page.next_cursor}"
        )


@privacy_app.command("show")
def show(request_id: IdArg, token: TokenOption = None, purpose: PurposeOption = None) -> None:
    """One request: deadline, outcome, every step."""
    ctx = _ctx("read", token, purpose)
    _show(request_list.read_one(runtime=get_runtime(), ctx=ctx, request_id=request_id))


@privacy_app.command("verify")
def verify(
    request_id: IdArg,
    note: Annotated[str | None, typer.Option("--note")] = None,
    token: TokenOption = None,
    purpose: PurposeOption = None,
) -> None:
    """Record that the requester's identity was verified."""
    rt = get_runtime()
    ctx = cli_access(runtime=rt, token=token, purpose=purpose, resource=RESOURCE, action="write")
    _show(
        request_lifecycle.verify(
            runtime=rt, request_id=request_id, actor=ctx.principal_name, note=note
        )
    )


@privacy_app.command("reject")
def reject(
    request_id: IdArg,
    reason: Annotated[str, typer.Option("--reason")],
    token: TokenOption = None,
    purpose: PurposeOption = None,
) -> None:
    """Refuse a request, keeping the reason."""
    rt = get_runtime()
    ctx = cli_access(runtime=rt, token=token, purpose=purpose, resource=RESOURCE, action="write")
    _show(
        request_lifecycle.reject(
            runtime=rt, request_id=request_id, actor=ctx.principal_name, reason=reason
        )
    )


@privacy_app.command("extend")
def extend(
    request_id: IdArg,
    reason: Annotated[str, typer.Option("--reason")],
    months: Annotated[int, typer.Option("--months", min=1, max=2)] = 2,
    token: TokenOption = None,
    purpose: PurposeOption = None,
) -> None:
    """Extend the deadline once, by one or two months."""
    rt = get_runtime()
    ctx = cli_access(runtime=rt, token=token, purpose=purpose, resource=RESOURCE, action="write")
    _show(
        request_lifecycle.extend(
            runtime=rt,
            request_id=request_id,
            actor=ctx.principal_name,
            reason=reason,
            months=months,
        )
    )


@privacy_app.command("run")
def run(request_id: IdArg, token: TokenOption = None, purpose: PurposeOption = None) -> None:
    """Carry out a verified request (audited) and complete it."""
    rt = get_runtime()
    ctx = cli_access(runtime=rt, token=token, purpose=purpose, resource=RESOURCE, action="run")
    _show(runner.run(runtime=rt, ctx=ctx, request_id=request_id))


@privacy_app.command("package")
def package(
    request_id: IdArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="JSON file to write.")],
    html: Annotated[Path | None, typer.Option("--html", help="Also write the summary.")] = None,
    token: TokenOption = None,
    purpose: PurposeOption = None,
) -> None:
    """Write the access package (JSON, and optionally the HTML summary); audited."""
    writable(output, "--output")
    if html is not None:
        writable(html, "--html")
    rt = get_runtime()
    ctx = cli_access(runtime=rt, token=token, purpose=purpose, resource=RESOURCE, action="read")
    pkg = runner.download_package(runtime=rt, ctx=ctx, request_id=request_id)
    write_file(output, pkg.json_bytes(), "--output", private=True)
    if html is not None:
        write_file(html, pkg.html(), "--html", private=True)
    console.print(f"package of {request_id} written")


@privacy_app.command("lift")
def lift(request_id: IdArg, token: TokenOption = None, purpose: PurposeOption = None) -> None:
    """Lift the restriction a restriction request opened."""
    rt = get_runtime()
    ctx = cli_access(runtime=rt, token=token, purpose=purpose, resource=RESOURCE, action="write")
    n = runner.lift_restriction(runtime=rt, ctx=ctx, request_id=request_id)
    console.print(f"{n} restriction(s) lifted")
