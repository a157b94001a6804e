"""Demo steps on the audit trail: compliance reports as the auditor, then the chain verified and
its head signed.

The reports are read by the ``auditor`` principal for purpose ``audit`` through
:func:`cdp.audit.report_service.produce_report` (policy checked, the report read itself recorded)
and written as HTML into ``HOME/demo/reports/`` (mode 0600): a subject access report for the
customer the support agent read (who read that person's data, for what, and who was denied) and
the records-of-processing report. The chain is verified last, so the signed checkpoint
(``HOME/demo/audit-checkpoint.json``, as ``cdp audit checkpoint`` writes it) covers every record
the demo produced, the report reads included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from cdp.audit.checkpoint import write_checkpoint
from cdp.audit.report_service import produce_report
from cdp.audit.verify import verify_chain
from cdp.demo.pipeline import DemoContext, DemoStep
from cdp.demo.steps_access import act_as, write_private_text
from cdp.errors import ConflictError
from cdp.runtime import get_runtime

CHECKPOINT_FILE: Final = "audit-checkpoint.json"


def _reports(ctx: DemoContext) -> None:
    rt = get_runtime()
    out_dir = ctx.work_dir / "reports"
    written: dict[str, Path] = {}
    subject = ctx.results.get("reads", {}).get("subject_id")
    if subject is not None:
        auditor = act_as(
            ctx,
            "auditor",
            purpose="audit",
            resource="audit_reports",
            action="read",
            subject_ids=[subject],
        )
        report = produce_report(
            runtime=rt, ctx=auditor, kind="subject-access", fmt="html", subject_id=subject
        )
        written["subject-access"] = out_dir / "subject-access.html"
        write_private_text(written["subject-access"], report.body)
    auditor = act_as(ctx, "auditor", purpose="audit", resource="audit_reports", action="read")
    report = produce_report(runtime=rt, ctx=auditor, kind="processing", fmt="html")
    written["processing"] = out_dir / "records-of-processing.html"
    write_private_text(written["processing"], report.body)
    for kind, path in written.items():
        ctx.say(f"{kind} report -> {path}")
    ctx.results["reports"] = written
    ctx.done["reports"] = ", ".join(str(p) for p in written.values())


def _audit(ctx: DemoContext) -> None:
    rt = get_runtime()
    result = verify_chain(runtime=rt)
    if not result.ok:
        raise ConflictError(
            f"the audit chain is broken at record {result.first_bad_seq}: {result.problem}"
        )
    path = ctx.work_dir / CHECKPOINT_FILE
    checkpoint = write_checkpoint(
        runtime=rt, seq=result.last_seq, digest=result.last_hash, out=path
    )
    path.chmod(0o600)
    ctx.say(
        f"audit chain OK: {result.records:,} records verified; signed checkpoint of record "
        f"{checkpoint.seq} -> {path}"
    )
    ctx.results["audit"] = {"verify": result, "checkpoint": path}
    ctx.done["audit"] = f"chain OK, {result.records:,} records; checkpoint {path}"


STEPS: Final = [
    DemoStep("reports", "Render compliance reports (as the auditor)", _reports),
    DemoStep("audit", "Verify the audit chain and sign a checkpoint", _audit),
]
