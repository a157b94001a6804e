"""``cdp consent show|grant|withdraw|export``: the consent ledger from the command line.

``grant`` and ``withdraw`` take exactly the same arguments (withdrawing is never harder than
granting). Every command authenticates a principal (``--token``/``CDP_TOKEN``) for a purpose of
use (``--purpose``) like an API request, and is audited.
"""

from __future__ import annotations

import io
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cdp.audit.service import audited_read, record_access
from cdp.cli.access import PurposeOption, TokenOption, cli_access
from cdp.cli.paths import output_file, writable
from cdp.cli.root import app, console, err_console
from cdp.clock import utcnow
from cdp.consent import export, ledger_state
from cdp.consent.purposes import Mechanism
from cdp.consent.recording import record_choice
from cdp.errors import InvalidInputError
from cdp.runtime import get_runtime

consent_app = typer.Typer(help="Consent ledger: show, grant, withdraw, bulk export.")
app.add_typer(consent_app, name="consent")

SubjectArg = Annotated[str, typer.Argument(help="The subject id.")]
ConsentPurposeArg = Annotated[
    str, typer.Argument(help="Consent purpose, e.g. email_marketing (see docs).")
]
SourceOpt = Annotated[str, typer.Option("--source", help="Where the choice was made.")]
NoticeOpt = Annotated[str | None, typer.Option("--notice-version", help="Notice shown.")]
MechanismOpt = Annotated[str, typer.Option("--mechanism", help="checkbox, banner, import, cli...")]
AtOpt = Annotated[
    str | None, typer.Option("--at", help="When the choice was made (ISO 8601; default now).")
]


def _when(at: str | None) -> datetime:
    if at is None:
        return utcnow()
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        raise InvalidInputError("--at is not an ISO 8601 time", field="--at") from None
    if moment.tzinfo is None:
        raise InvalidInputError("--at needs a timezone (e.g. Z or +08:00)", field="--at")
    return moment


@consent_app.command("show")
def show(subject_id: SubjectArg, token: TokenOption = None, purpose: PurposeOption = None) -> None:
    """The subject's current state per purpose and its full history (proof of consent)."""
    rt = get_runtime()
    ctx = cli_access(
        runtime=rt,
        token=token,
        purpose=purpose,
        resource="data:consent",
        action="read",
        subject_ids=[subject_id],
    )
    # one read transaction; its record commits before anything is shown, and a failed read
    # (an unknown or erased id) is recorded too
    with audited_read(
        runtime=rt, ctx=ctx, action="read", resource="data:consent", subject_ids=[subject_id]
    ) as scope:
        proof = ledger_state.consent_proof(conn=scope.conn, subject_id=subject_id)
        scope.returned(subject_ids=[proof.subject_id], fields=["consent"])
    if proof.subject_id != subject_id:
        console.print(f"subject {proof.subject_id} (it absorbed {subject_id} in a merge)")
    state = Table("purpose", "status", "since", "source", "mechanism", "notice", title="Now")
    for s in proof.states.values():
        since = s.occurred_at.isoformat() if s.occurred_at else "(default)"
        state.add_row(
            s.purpose, s.status, since, s.source or "", s.mechanism or "", s.notice_version or ""
        )
    console.print(state)
    hist = Table(
        "occurred",
        "recorded",
        "purpose",
        "status",
        "source",
        "mechanism",
        "notice",
        "recorded by",
        title="History",
    )
    for r in proof.history:
        hist.add_row(
            r.occurred_at.isoformat(),
            r.recorded_at.isoformat(),
            r.purpose,
            r.status,
            r.source,
            r.mechanism,
            r.notice_version or "",
            r.recorded_by,
        )
    console.print(hist)


def _record(
    status: str,
    subject_id: str,
    consent_purpose: str,
    source: str,
    notice: str | None,
    mechanism: str,
    at: str | None,
    token: str | None,
    purpose: str | None,
) -> None:
    rt = get_runtime()
    ctx = cli_access(
        runtime=rt,
        token=token,
        purpose=purpose,
        resource="data:consent",
        action="write",
        subject_ids=[subject_id],
    )
    done = record_choice(
        runtime=rt,
        ctx=ctx,
        subject_id=subject_id,
        purpose=consent_purpose,
        status=status,
        occurred_at=_when(at),
        source=source,
        mechanism=mechanism,
        notice_version=notice,
    )
    note = "recorded" if done.recorded else "already recorded"
    if done.subject_id != subject_id:
        note += f" for {done.subject_id} (it absorbed {subject_id} in a merge)"
    console.print(f"{consent_purpose}: {status} {note}; current state: {done.state.status}")


@consent_app.command("grant")
def grant(
    subject_id: SubjectArg,
    consent_purpose: ConsentPurposeArg,
    source: SourceOpt = "cli",
    notice_version: NoticeOpt = None,
    mechanism: MechanismOpt = Mechanism.CLI.value,
    at: AtOpt = None,
    token: TokenOption = None,
    purpose: PurposeOption = None,
) -> None:
    """Record that the subject granted CONSENT_PURPOSE."""
    _record(
        "granted",
        subject_id,
        consent_purpose,
        source,
        notice_version,
        mechanism,
        at,
        token,
        purpose,
    )


@consent_app.command("withdraw")
def withdraw(
    subject_id: SubjectArg,
    consent_purpose: ConsentPurposeArg,
    source: SourceOpt = "cli",
    notice_version: NoticeOpt = None,
    mechanism: MechanismOpt = Mechanism.CLI.value,
    at: AtOpt = None,
    token: TokenOption = None,
    purpose: PurposeOption = None,
) -> None:
    """Record that the subject withdrew CONSENT_PURPOSE (same arguments as grant)."""
    _record(
        "withdrawn",
        subject_id,
        consent_purpose,
        source,
        notice_version,
        mechanism,
        at,
        token,
        purpose,
    )


@consent_app.command("export")
def export_states(
    fmt: Annotated[str, typer.Option("--format", help="csv or json.")] = "csv",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File (default stdout).")
    ] = None,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Only this consent purpose (repeatable).")
    ] = None,
    token: TokenOption = None,
    purpose: PurposeOption = None,
) -> None:
    """Current consent state of every subject per purpose, as CSV or JSON."""
    if fmt not in {"csv", "json"}:
        raise InvalidInputError("--format must be csv or json", field="--format")
    if output is not None:
        writable(output, "--output")
    rt = get_runtime()
    ctx = cli_access(
        runtime=rt, token=token, purpose=purpose, resource="data:consent", action="read"
    )

    def audit(ids: list[str]) -> None:
        record_access(
            runtime=rt,
            ctx=ctx,
            action="export",
            resource="data:consent",
            outcome="allowed",
            subject_ids=ids,
            fields=["consent"],
        )

    rows = export.iter_states(runtime=rt, purposes=only or None, on_batch=audit)
    writer = export.write_csv if fmt == "csv" else export.write_json
    if output is None:
        n = writer(sys.stdout, rows)
    else:
        with output_file(output, "--output") as raw:
            fh = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            n = writer(fh, rows)
            fh.flush()
            fh.detach()
    err_console.print(f"{n} rows exported")
