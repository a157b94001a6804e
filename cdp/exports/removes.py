"""An export's removes: the staged ones (subjects no longer eligible) and the withdrawals of
values rectified since the destination got them (:mod:`cdp.exports.rectified`).

Before the removes, the destination's pending rectified values are read and decrypted (one
audit record, action ``decrypt``, naming the subjects and fields, committed before any row is
written out). A subject with one whose remove is staged is withdrawn by that remove, carrying
the value the destination holds in place of the current one; every other such subject gets a
remove of its own carrying only those values (counted in ``removes_rectified``), written to the
same removes output before the staged removes. A subject's remove of a replaced value is not a
new disclosure (the destination had the value; the ledger names it already): a file export
writes no ledger row for it, a webhook's batch writes one unless the export sent the subject
already (its add).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from cdp.access.context import AccessContext
from cdp.audit.service import record_access
from cdp.clock import Clock
from cdp.exports.destinations import DestinationInfo
from cdp.exports.manifest import ExportCounts
from cdp.exports.outputs import Outputs
from cdp.exports.rectified import Pending, pending
from cdp.exports.send import Progress, send_staged
from cdp.exports.staging import STAGING
from cdp.runtime import Runtime


@dataclass
class RemovesDone:
    """What the removes step did, for the close."""

    rectified: Pending
    lost: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    """Staged removes dead-lettered."""
    failed_rectified: list[str] = field(default_factory=list)
    """Removes of rectified values alone dead-lettered."""


def read_rectified(runtime: Runtime, ctx: AccessContext, dest: DestinationInfo) -> Pending:
    """The destination's pending rectified values, decrypted; the decryption audited."""
    found = pending(runtime, destination_id=dest.id)
    if found.values:
        record_access(
            runtime=runtime,
            ctx=ctx,
            action="decrypt",
            resource="exports",
            outcome="allowed",
            subject_ids=sorted(found.values),
            fields=found.fields(),
        )
    return found


def unstaged(runtime: Runtime, export_id: str, found: Pending) -> list[str]:
    """The subjects with a replaced value whose remove is not staged in this export."""
    if not found.values:
        return []
    ids = sorted(found.values)
    staged: set[str] = set()
    with runtime.data_engine.connect() as conn:
        for start in range(0, len(ids), 5_000):
            part = ids[start : start + 5_000]
            staged.update(
                conn.execute(
                    sa.select(STAGING.c.subject_id).where(
                        STAGING.c.export_id == export_id,
                        STAGING.c.action == "remove",
                        STAGING.c.subject_id.in_(part),
                    )
                ).scalars()
            )
    return [s for s in ids if s not in staged]


def send_removes(
    runtime: Runtime,
    ctx: AccessContext,
    dest: DestinationInfo,
    outputs: Outputs,
    *,
    to_remove: int,
    found: Pending,
    alone: list[str],
    counts: ExportCounts,
    progress: Progress | None,
    clock: Clock,
) -> RemovesDone:
    """Write the removes of replaced values (``alone``) and the staged removes to one sink."""
    sink = outputs.sink("remove")
    out_ids, rows, _ = outputs.maker.make_chunk(alone, {s: found.values[s] for s in alone})
    sink.write(out_ids, rows)
    done = RemovesDone(found)
    if to_remove:
        done.lost, failed, _ = send_staged(
            runtime, ctx, dest, outputs, sink, "remove", to_remove, progress, clock,
            replaced=found.values,
        )  # fmt: skip
    else:
        failed = outputs.finish(sink)
    mine = set(out_ids)
    done.failed = [s for s in failed if s not in mine]
    done.failed_rectified = [s for s in failed if s in mine]
    counts.removes_unresolvable = len(done.lost)
    counts.removes_failed = len(done.failed) + len(done.failed_rectified)
    counts.removed = to_remove - len(done.lost) - len(done.failed)
    counts.removes_rectified = len(out_ids) - len(done.failed_rectified)
    return done
