"""Batching rows into webhook requests and recording each batch's fate.

Rows are grouped into batches of the destination's ``batch_size``; each batch is one JSON body::

    {"export_id": "...", "destination": "...", "op": "add" | "remove", "seq": 1,
     "rows": [{"email": "..."}, ...]}

with the idempotency key ``<export id>.<op>.<seq>``. Every batch leaves one
``webhook_deliveries`` row: ``delivered``, or ``dead_letter`` after its last try. A dead letter
keeps the batch's subject ids (never its body, which holds personal data). The pipeline keeps
them in the recipients ledger and puts them in the sync state *unconfirmed*: the body was sent,
and a receiver that timed out or answered an error may still have kept it, so the next run sends
them again under the consent in force then, or a remove once they are no longer eligible.

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

    @property
    def pending_ids(self) -> list[str]:
        """The subjects whose rows are still buffered: none of their data has left cdp."""
        return list(self._ids)

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
        result = self._sender.deliver(body, idempotency_key=key, export_id=self._export_id)
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
