"""``cdp audit``: verify the chain, sign a checkpoint of its head, render compliance reports.

``verify`` and ``checkpoint`` work on the installation directly (they need the key file, like
``cdp init``); ``report`` is a read of the audit trail by a principal and goes through the policy
(``audit_reports`` read: auditor and dpo) and into the audit log like every other read.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from cdp.audit.checkpoint import head_of_log, read_checkpoint, write_checkpoint
from cdp.audit.verify import verify_chain
from cdp.cli.access import PurposeOption, TokenOption, cli_access
from cdp.cli.paths import plain_file_or_absent, writable, write_file
from cdp.cli.root import app, console, err_console, styled
from cdp.runtime import get_runtime

audit_app = typer.Typer(help="The audit trail: verify, checkpoint, reports.")
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def verify(
    checkpoint: Annotated[
        Path | None,
        typer.Option("--checkpoint", help="A signed checkpoint file: also detect a cut tail."),
    ] = None,
) -> None:
    """Check every record's hash and link; name the first broken record (exit status 1)."""
    rt = get_runtime()
    cp = read_checkpoint(runtime=rt, path=checkpoint) if checkpoint is not None else None
    result = verify_chain(runtime=rt, checkpoint=cp)
    rate = f"{result.rate:,.0f} records/s" if result.records else "-"
    if result.ok:
        suffix = f"; checkpoint at {cp.seq} matches" if cp is not None else ""
        console.print(
            f"audit chain OK: {result.records} records, head {result.last_seq} "
            f"{result.last_hash[:16]}… ({result.seconds:.2f}s, {rate}){suffix}"
        )
        return
    err_console.print(
        styled(
            ("audit chain BROKEN", "red"),
            f" at record {result.first_bad_seq}: {result.problem} "
            f"({result.records} records verified before it)",
        )
    )
    raise typer.Exit(1)


@audit_app.command("checkpoint")
def checkpoint(
    out: Annotated[Path, typer.Option("--out", help="Where to write the signed checkpoint.")],
    skip_verify: Annotated[
        bool, typer.Option("--no-verify", help="Sign the head without verifying the chain first.")
    ] = False,
) -> None:
    """Sign the chain's head (sequence, hash) with the audit signing key; keep the file safe."""
    plain_file_or_absent(out, "--out")
    rt = get_runtime()
    if skip_verify:
        seq, digest = head_of_log(rt)
    else:
        result = verify_chain(runtime=rt)
        if not result.ok:
            err_console.print(
                styled(
                    ("refusing to sign a broken chain", "red"),
                    f": record {result.first_bad_seq}: {result.problem}",
                )
            )
            raise typer.Exit(1)
        seq, digest = result.last_seq, result.last_hash
    cp = write_checkpoint(runtime=rt, seq=seq, digest=digest, out=out)
    console.print(f"checkpoint of record {cp.seq} ({cp.hash[:16]}…) written to {out}")


@audit_app.command("report")
def report(
    kind: Annotated[
        str,
        typer.Argument(help="subject-access | principal-activity | denied-anomalies | processing"),
    ],
    token: TokenOption = None,
    purpose: PurposeOption = None,
    subject: Annotated[str | None, typer.Option("--subject", help="Subject id.")] = None,
    principal: Annotated[str | None, typer.Option("--principal", help="Principal name.")] = None,
    since: Annotated[
        datetime | None, typer.Option("--since", help="Start (default: 30 days ago), UTC.")
    ] = None,
    until: Annotated[
        datetime | None, typer.Option("--until", help="End (default: now), UTC.")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="md, html or csv.")] = "md",
    out: Annotated[Path | None, typer.Option("--out", help="Write to this file.")] = None,
) -> None:
    """Render a compliance report (auditor or dpo; the read is recorded in the audit log)."""
    if out is not None:
        writable(out, "--out")
    rt = get_runtime()
    ctx = cli_access(
        runtime=rt,
        token=token,
        purpose=purpose,
        resource="audit_reports",
        action="read",
        subject_ids=[subject] if subject else [],
    )
    from cdp.audit.report_service import produce_report  # only this command renders

    rendered = produce_report(
        runtime=rt,
        ctx=ctx,
        kind=kind,
        fmt=fmt,
        subject_id=subject,
        principal=principal,
        since=_utc(since),
        until=_utc(until),
    )
    if out is None:
        typer.echo(rendered.body, nl=False)
    else:
        write_file(out, rendered.body, "--out")
        console.print(f"{kind} report written to {out}")


def _utc(moment: datetime | None) -> datetime | None:
    """CLI times without a zone are UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)
