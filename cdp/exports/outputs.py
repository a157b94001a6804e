"""Where an export's rows go, by destination kind: the row maker and one sink per operation.

Files land in ``CDP_EXPORT_DIR/<destination>/``: ``<export id>.csv`` (or ``.jsonl``) for the
adds, ``<export id>.removes.csv`` for the removes, ``<export id>.manifest.json`` beside them.
A webhook export posts signed batches instead and keeps only the manifest file.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from cdp.clock import Clock
from cdp.exports.delivery import WebhookSink
from cdp.exports.destinations import AUDIENCE_FORMAT, DestinationInfo, DestinationKind
from cdp.exports.interrupt import check_stop
from cdp.exports.manifest import OutputFile
from cdp.exports.rows import AudienceRows, PlainRows, RowMaker
from cdp.exports.signing_secrets import SigningSecrets
from cdp.exports.webhook import RetryPolicy, WebhookSender
from cdp.exports.writers import FileSink, write_json_file
from cdp.runtime import Runtime


def export_dir(runtime: Runtime) -> Path:
    """``CDP_EXPORT_DIR``, or ``CDP_HOME/exports``."""
    configured = runtime.settings.export_dir
    return configured if configured is not None else runtime.settings.home / "exports"


class Outputs:
    """The sinks of one export and what they wrote."""

    def __init__(
        self,
        *,
        runtime: Runtime,
        dest: DestinationInfo,
        export_id: str,
        clock: Clock,
        retry: RetryPolicy | None,
        stop: threading.Event | None = None,
    ) -> None:
        self._runtime = runtime
        self._stop = stop
        self._dest = dest
        self._export_id = export_id
        self._clock = clock
        self._retry = retry or RetryPolicy(max_attempts=dest.max_attempts)
        self._dir = export_dir(runtime) / dest.name
        self._files: list[tuple[str, FileSink]] = []
        self._hooks: list[tuple[str, WebhookSink]] = []
        self._sender: WebhookSender | None = None
        kind = DestinationKind(dest.kind)
        fmt = AUDIENCE_FORMAT.get(kind)
        self.maker: RowMaker = (
            AudienceRows(fmt, dest.fields, default_region=runtime.settings.default_region)
            if fmt is not None
            else PlainRows(dest.fields, spreadsheet=kind is DestinationKind.CSV)
        )
        self._kind = kind

    def __repr__(self) -> str:
        return f"Outputs(export_id={self._export_id}, kind={self._kind.value})"

    def raise_if_stopped(self) -> None:
        """``ExportInterruptedError`` once the export was asked to stop (the ``stop`` event its
        sinks check too; :mod:`cdp.exports.interrupt`)."""
        check_stop(self._stop, self._export_id)

    def sink(self, op: str, *, hold_until: int = 0) -> FileSink | WebhookSink:
        """A new sink for ``op`` (``add`` or ``remove``); a webhook sends nothing before
        ``hold_until`` rows are ready (files are only moved into place at commit)."""
        if self._kind is DestinationKind.WEBHOOK:
            if self._sender is None:
                secrets = SigningSecrets(
                    runtime=self._runtime, destination=self._dest, clock=self._clock
                )
                secrets()  # a secret that cannot be read fails the export before any batch
                assert self._dest.url is not None
                self._sender = WebhookSender(
                    url=self._dest.url,
                    secret=secrets,  # read again for every try: a rotation is followed
                    timeout_seconds=self._dest.timeout_seconds,
                    retry=self._retry,
                    stop=self._stop,
                )
            first = 1 + sum(h.next_seq - 1 for _, h in self._hooks)
            hook = WebhookSink(
                runtime=self._runtime,
                sender=self._sender,
                export_id=self._export_id,
                destination=self._dest.name,
                destination_id=self._dest.id,
                fields=",".join(self._dest.fields),
                op=op,
                headers=self.maker.headers,
                batch_size=self._dest.batch_size,
                first_seq=first,
                hold_until=hold_until,
                clock=self._clock,
                stop=self._stop,
            )
            self._hooks.append((op, hook))
            return hook
        fmt = "jsonl" if self._kind is DestinationKind.JSONL else "csv"
        suffix = ".removes" if op == "remove" else ""
        path = self._dir / f"{self._export_id}{suffix}.{fmt}"
        sink = FileSink(path, self.maker.headers, fmt=fmt, digests_only=self.maker.digests_only)
        self._files.append((op, sink))
        return sink

    def finish(self, sink: Any) -> list[str]:
        """Flush ``sink``; return the subject ids whose delivery failed (webhooks only)."""
        if isinstance(sink, WebhookSink):
            sink.finish()
            return list(sink.failed_ids)
        return []

    def commit(self) -> list[OutputFile]:
        """Move files into place and describe every output."""
        out: list[OutputFile] = []
        for op, f in self._files:
            f.commit()
            out.append(OutputFile(op, str(f.path), f.rows, f.sha256))
        for op, h in self._hooks:
            out.append(OutputFile(op, self._dest.url, h.delivered, h.hash.hexdigest()))
        self._close_sender()
        return out

    def discard(self, sink: FileSink | WebhookSink) -> None:
        """Drop one sink whose rows must not leave (adds refused for the minimum audience): its
        file is removed; a webhook sink that held its rows back has sent nothing."""
        if isinstance(sink, FileSink):
            sink.abort()
            self._files = [(op, f) for op, f in self._files if f is not sink]
        elif sink.delivered == 0 and sink.dead_letters == 0:
            self._hooks = [(op, h) for op, h in self._hooks if h is not sink]

    @property
    def ledger_per_batch(self) -> bool:
        """Whether the sinks write the recipients ledger themselves, batch by batch, as each
        batch's request starts (webhooks), rather than the pipeline per chunk (files)."""
        return self._kind is DestinationKind.WEBHOOK

    def unsent_ids(self) -> list[str] | None:
        """After a failure: the subjects whose ledger rows must go because none of their data
        left cdp, or None for every subject (files: :meth:`abort` removes them, so nothing
        left). None of a webhook's (an empty list): its ledger names only the batches whose
        request started, whatever happened after."""
        if self._kind is not DestinationKind.WEBHOOK:
            return None
        return []

    def abort(self) -> None:
        """Remove partial files (a refused or failed export leaves none)."""
        for _, f in self._files:
            f.abort()
        self._close_sender()

    def _close_sender(self) -> None:
        if self._sender is not None:
            self._sender.close()
            self._sender = None

    def write_manifest(self, document: dict[str, Any]) -> Path:
        """Write the manifest beside the output."""
        path = self._dir / f"{self._export_id}.manifest.json"
        write_json_file(path, document)
        return path
