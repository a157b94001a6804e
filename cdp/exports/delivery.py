"""Batching rows into webhook requests and recording each batch's fate.

Rows are grouped into batches of the destination's ``batch_size``; each batch is one JSON body::

    {"export_id": "...", "destination": "...", "op": "add" | "remove", "seq": 1,
     "rows": [{"email": "..."}, ...]}

with the idempotency key ``<export id>.<op>.<seq>``.

The sink keeps the recipients ledger of its batches: the first time a try of a batch is about to
write its request on an open connection (the sender's ``on_send``), the batch's subjects are
written to the ledger in a transaction of their own, committed before the request's first byte
goes. So the ledger names exactly the subjects whose data may have left cdp: a batch whose every
try was refused, failed to resolve or had an unusable URL, and a batch never posted (still
buffered, held back for the minimum audience, or after the process died), name nobody; a batch
that timed out, was answered with an error, or whose connection was reset after it was sent,
names its subjects, and so does the batch in flight when the process is killed.

Every batch leaves one ``webhook_deliveries`` row: ``delivered``, or ``dead_letter`` after its
last try. A dead letter keeps the batch's subject ids (never its body, which holds personal
data). When its body may have left (the ledger names them), the pipeline puts them in the sync
state *unconfirmed*: a receiver that timed out or answered an error may still have kept it, so
the next run sends them again under the consent in force then, or a remove once they are no
longer eligible. When it never left, they stay out of the ledger and the sync state: the next
run sends them again while they are eligible, and never a remove about them.

Given a ``stop`` event, the sink sends no new batch once it is set: it raises
``ExportInterruptedError`` instead (the rows still buffered never left cdp). A batch whose retry
the sender gave up on because of ``stop`` is dead-lettered as ``interrupted``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable

import sqlalchemy as sa

from cdp.clock import Clock, utcnow
from cdp.exports import sync
from cdp.exports.interrupt import check_stop
from cdp.exports.models import WebhookDelivery
from cdp.exports.webhook import WebhookSender
from cdp.logging import get_logger
from cdp.runtime import Runtime

DELIVERIES = WebhookDelivery.__table__  # type: ignore[attr-defined]
log = get_logger("cdp.exports")


class WebhookSink:
    """A row sink that posts full batches as they fill and records every batch.

    ``hold_until``: send nothing until that many rows are ready, so that an export whose usable
    rows fall below the destination's minimum audience (found only after decryption) has sent
    nothing when it is refused."""

    def __init__(
        self,
        *,
        runtime: Runtime,
        sender: WebhookSender,
        export_id: str,
        destination: str,
        destination_id: str,
        fields: str,
        op: str,
        headers: tuple[str, ...],
        batch_size: int,
        first_seq: int = 1,
        hold_until: int = 0,
        clock: Clock = utcnow,
        on_batch: Callable[[bool, int], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self._runtime = runtime
        self._stop = stop
        self._sender = sender
        self._export_id = export_id
        self._destination = destination
        self._destination_id = destination_id
        self._fields = fields
        self._op = op
        self._headers = headers
        self._batch_size = batch_size
        self._clock = clock
        self._on_batch = on_batch
        self._hold_until = hold_until
        self._released = hold_until <= 0
        self._ids: list[str] = []
        self._rows: list[list[str]] = []
        self.next_seq = first_seq
        self.delivered = 0
        self.failed_ids: list[str] = []
        self.dead_letters = 0
        self.hash = hashlib.sha256()

    def __repr__(self) -> str:
        return f"WebhookSink(export_id={self._export_id}, op={self._op})"

    def write(self, subject_ids: list[str], rows: list[list[str]]) -> None:
        """Buffer rows; send full batches once released (see ``hold_until``)."""
        self._ids.extend(subject_ids)
        self._rows.extend(rows)
        if not self._released and len(self._rows) >= self._hold_until:
            self._released = True
        while self._released and len(self._rows) >= self._batch_size:
            self._send(self._batch_size)

    def finish(self) -> None:
        """Send what is left in the buffer, unless the hold was never reached: then nothing
        has been sent at all, and the pipeline refuses the export (minimum audience)."""
        if self._rows and (self._released or len(self._rows) >= self._hold_until):
            self._send(len(self._rows))

    def _body(self, rows: list[list[str]], seq: int) -> bytes:
        headers = self._headers
        document = {
            "export_id": self._export_id,
            "destination": self._destination,
            "op": self._op,
            "seq": seq,
            "rows": [{h: v for h, v in zip(headers, r, strict=True) if v} for r in rows],
        }
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()

    def _send(self, n: int) -> None:
        check_stop(self._stop, self._export_id)
        ids, self._ids = self._ids[:n], self._ids[n:]
        rows, self._rows = self._rows[:n], self._rows[n:]
        seq = self.next_seq
        self.next_seq += 1
        body = self._body(rows, seq)
        key = f"{self._export_id}.{self._op}.{seq}"
        started = self._clock()
        recorded: list[bool] = []

        def on_send() -> None:  # before a try writes its request: the body may leave now
            if not recorded:
                self._record(ids)
                recorded.append(True)

        result = self._sender.deliver(
            body, idempotency_key=key, export_id=self._export_id, on_send=on_send
        )
        if not recorded and (result.delivered or result.last_status is not None):
            on_send()  # answered, so sent, yet not announced (a transport without the trace)
        if result.delivered:
            self.hash.update(body)
            self.delivered += len(ids)
        else:
            self.failed_ids.extend(ids)
            self.dead_letters += 1
            log.warning(
                "webhook batch dead-lettered",
                export_id=self._export_id,
                seq=seq,
                op=self._op,
                attempts=result.attempts,
                status=result.last_status,
                reason=result.last_error,
            )
        with self._runtime.data_engine.begin() as conn:
            conn.execute(
                sa.insert(DELIVERIES).values(
                    export_id=self._export_id,
                    seq=seq,
                    op=self._op,
                    idempotency_key=key,
                    status="delivered" if result.delivered else "dead_letter",
                    attempts=result.attempts,
                    rows=len(ids),
                    last_status=result.last_status,
                    last_error=result.last_error,
                    subject_ids=None if result.delivered else json.dumps(ids),
                    created_at=started,
                    finished_at=self._clock(),
                )
            )
        if self._on_batch is not None:
            self._on_batch(result.delivered, len(ids))

    def _record(self, ids: list[str]) -> None:
        """The batch's subjects into the recipients ledger, committed at once."""
        with self._runtime.data_engine.begin() as conn:
            sync.record_batch(
                conn,
                export_id=self._export_id,
                destination_id=self._destination_id,
                subject_ids=ids,
                op=self._op,
                fields=self._fields,
                at=self._clock(),
            )
