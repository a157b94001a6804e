"""Sending an export's staged subjects of one action (adds or removes), chunk by chunk.

Per chunk of :data:`CHUNK` staged ids (in id order): for adds, drop the subjects whose consent or
restriction changed since staging (:mod:`cdp.exports.recheck`); decrypt only the fields the
destination may receive (:func:`cdp.exports.decrypt.decrypt_chunk`); build the rows; in one
transaction check the adds again, write the audit record naming the decrypted subjects and (file
exports) the recipients-ledger rows; then hand the rows to the sink (file or signed webhook
batches; a webhook sink writes the ledger rows of each batch as its request starts:
:mod:`cdp.exports.delivery`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cdp.access.context import AccessContext
from cdp.audit.service import record_access
from cdp.clock import Clock
from cdp.exports import staging, sync
from cdp.exports.collector import chunk_collection
from cdp.exports.decrypt import decrypt_chunk, is_dense, stored_subjects
from cdp.exports.destinations import DestinationInfo
from cdp.exports.outputs import Outputs
from cdp.exports.recheck import Recheck, without
from cdp.runtime import Runtime

Progress = Callable[[str, int, int], None]
"""``progress(action, done, total)``: called after each chunk."""

CHUNK = 5_000
"""Staged subjects decrypted, audited and written together."""


def send_staged(
    runtime: Runtime,
    ctx: AccessContext,
    dest: DestinationInfo,
    outputs: Outputs,
    sink: Any,
    action: str,
    total: int,
    progress: Progress | None,
    clock: Clock,
    recheck: Recheck | None = None,
    replaced: Mapping[str, Mapping[str, str]] | None = None,
) -> tuple[list[str], list[str], dict[str, str]]:
    """Decrypt, audit and write every staged subject with ``action``; return (ids without
    usable data, ids whose delivery failed, ids found no longer eligible by ``recheck``).
    ``replaced``: values rectified since the destination got them (subject -> {field: the
    value it holds}), written in place of the current ones (removes: the destination is
    withdrawn what it holds, never sent a value it did not get)."""
    maker = outputs.maker
    needs = maker.needs
    ledger_here = not outputs.ledger_per_batch
    fields = ",".join(dest.fields)
    skipped: list[str] = []
    late: dict[str, str] = {}
    done = 0
    chunks = staging.iter_ids(
        runtime.data_engine, export_id=ctx.request_id, action=action, chunk=CHUNK
    )
    stored = stored_subjects(runtime) if total >= CHUNK else 0
    with chunk_collection() as after_chunk:
        for ids in chunks:
            outputs.raise_if_stopped()
            kept = ids if recheck is None else recheck.drop(runtime.data_engine, ids, late)
            dense = stored > 0 and is_dense(kept, stored)
            profiles = decrypt_chunk(runtime, kept, needs, dense=dense) if kept else {}
            if replaced:
                for sid in kept:
                    if sid in replaced:
                        profiles[sid] = {**profiles.get(sid, {}), **replaced[sid]}
            out_ids, rows, unusable = maker.make_chunk(kept, profiles)
            if profiles:
                # The audit record and (files) the recipients ledger rows commit together,
                # before any row is written out. A webhook's rows are the sink's: written per
                # batch once its request starts, so a batch that never left names nobody.
                with runtime.data_engine.begin() as conn:
                    decrypted = list(profiles)  # audited as decrypted, whatever happens next
                    if recheck is not None:  # again: what committed while the chunk decrypted
                        now_late = recheck.late(conn, kept)
                        recheck.mark(conn, now_late)
                        if now_late:
                            late.update(now_late)
                            out_ids, rows, unusable, profiles = without(
                                now_late, out_ids, rows, unusable, profiles
                            )
                    record_access(
                        runtime=runtime,
                        ctx=ctx,
                        action="decrypt",
                        resource="exports",
                        outcome="allowed",
                        subject_ids=decrypted,
                        fields=needs,
                        conn=conn,
                    )
                    if ledger_here and profiles:  # not every subject dropped just now
                        sync.record_recipients(
                            conn,
                            export_id=ctx.request_id,
                            destination_id=dest.id,
                            chunk=ids,
                            skipped=unusable,
                            op=action,
                            fields=fields,
                            at=clock(),
                        )
            skipped.extend(unusable)
            sink.write(out_ids, rows)
            del profiles, out_ids, rows
            after_chunk()
            done += len(ids)
            if progress is not None:
                progress(action, done, total)
    return skipped, outputs.finish(sink), late
