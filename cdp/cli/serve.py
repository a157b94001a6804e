"""``cdp serve``: the HTTP API under uvicorn, plus the scheduled-exports and retention threads.

The scheduled-exports thread also runs the traits job (:class:`cdp.jobs.TraitsJob`, every
``CDP_TRAITS_INTERVAL``) at the start of each of its passes, so that traits are recomputed
before, never during, the exports that read them.

The API app is built by ``cdp.api.app:create_app`` in each worker. The export scheduler runs in
this (the parent) process only, in one background thread, so that however many workers serve
requests, scheduled exports run one at a time (and several ``cdp serve`` hosts never run one
occurrence twice: each claims it first, see :mod:`cdp.exports.schedule`).

Stopping (SIGTERM, or SIGINT / Ctrl+C, sent to this process):

- uvicorn stops accepting connections and waits for the requests in flight, a handler still
  running after its client got its 504 included (:mod:`cdp.api.limits`); at the same moment the
  background jobs are told to stop: a scheduled export stops before its next chunk or webhook
  batch and closes its run as ``failed`` / ``interrupted`` (its occurrence stays due), retention
  stops between two of its steps, a traits recompute in progress runs to its end (none starts);
- all of it within ``CDP_SHUTDOWN_GRACE_SECONDS`` of the signal: requests still running then are
  cancelled and jobs left behind, and they end with the process (the next start closes such an
  export's run through :mod:`cdp.exports.recovery` and makes its schedule due again; retention
  runs at every start);
- the process exits 0 when everything ended in time, 1 when something was left behind: at once
  when a job thread is still running at the deadline, or, :data:`EXIT_MARGIN_SECONDS` after it,
  from a watchdog thread (a request's worker thread that uvicorn gave up on would otherwise keep
  the interpreter from exiting: it waits for such threads).

uvicorn (0.29 and later) replaces the SIGINT / SIGTERM handlers while it serves, then puts back
the ones it found and raises the signal it caught once more. Left to the default action, that
signal killed this process before the background threads were stopped; ``cdp serve`` therefore
installs its own handlers first, and they only take note.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from types import FrameType
from typing import Annotated

import typer
import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from cdp.api.deps import server_runtime
from cdp.api.http_server import UVICORN_OPTIONS
from cdp.cli.root import app, console
from cdp.exports.schedule import scheduler_loop
from cdp.jobs import TraitsJob, retention_loop
from cdp.logging import get_logger
from cdp.settings import get_settings

log = get_logger("cdp.serve")
SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_MARGIN_SECONDS = 2.0
"""After the grace period, how long the process may take to exit before the watchdog ends it."""


class Shutdown:
    """When ``cdp serve`` began to stop, and the background jobs' ``stop`` event."""

    def __init__(self, stop: threading.Event, grace_seconds: float) -> None:
        self.stop = stop
        self.grace_seconds = grace_seconds
        self.deadline: float | None = None
        self.signals: list[int] = []
        self.server: uvicorn.Server | None = None

    def begin(self) -> None:
        """Start the grace period, tell the jobs to stop and arm the watchdog, once (called by
        the server or the supervisor as its shutdown starts, never from a signal handler)."""
        if self.deadline is None:
            self.deadline = time.monotonic() + self.grace_seconds
            log.info("cdp serve stopping", grace_seconds=self.grace_seconds)
            self.stop.set()
            threading.Thread(
                target=self._watchdog, name="cdp-shutdown-watchdog", daemon=True
            ).start()

    def _watchdog(self) -> None:
        time.sleep(self.grace_seconds + EXIT_MARGIN_SECONDS)
        give_up("cdp serve did not exit in time", grace_seconds=self.grace_seconds)

    def remaining(self) -> float:
        """Seconds left of the grace period (which starts now if it had not)."""
        self.begin()
        assert self.deadline is not None
        return max(0.0, self.deadline - time.monotonic())

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        """cdp's SIGINT / SIGTERM handler, outside uvicorn's: take note (and stop a server that
        has not started to serve yet). Sets no lock-taking object: it may run at any moment."""
        self.signals.append(signum)
        if self.server is not None:
            self.server.should_exit = True


class _Server(uvicorn.Server):
    """One uvicorn worker in this process; its shutdown starts the jobs' too."""

    def __init__(self, config: uvicorn.Config, shutdown: Shutdown) -> None:
        super().__init__(config)
        self._cdp_shutdown = shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._cdp_shutdown.begin()
        await super().shutdown(sockets=sockets)


class _Supervisor(Multiprocess):
    """uvicorn's worker processes; stopping them starts the jobs' shutdown too."""

    def __init__(
        self, config: uvicorn.Config, sockets: list[socket.socket], shutdown: Shutdown
    ) -> None:
        super().__init__(config, sockets=sockets)
        self._cdp_shutdown = shutdown

    def terminate_all(self) -> None:
        self._cdp_shutdown.begin()
        super().terminate_all()


def _hangup(_signum: int, _frame: FrameType | None) -> None:
    """SIGHUP to a one-worker server: logged and otherwise ignored (its default action ended
    the process at once). The policy files are loaded by themselves when they change
    (``CDP_POLICY_RELOAD_SECONDS``); other settings take a restart. With several workers,
    uvicorn's supervisor restarts the workers on SIGHUP, one by one."""
    log.info(
        "SIGHUP ignored: the policy reloads by itself when its files change; "
        "restart cdp serve to apply other settings"
    )


def give_up(event: str, **fields: object) -> None:
    """Log ``event`` and end the process at once with status 1 (what still runs ends with it)."""
    log.error(event, **fields)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


def _wait(threads: list[threading.Thread], shutdown: Shutdown) -> None:
    """Wait for the job threads within the grace period; give up on those still running."""
    for thread in threads:
        thread.join(shutdown.remaining())
    left = sorted(t.name for t in threads if t.is_alive())
    if left:
        give_up("cdp serve stopped before its jobs ended", threads=left)
    log.info("cdp serve background jobs stopped")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
    scheduler: Annotated[bool, typer.Option(help="Run scheduled exports in this process.")] = True,
    retention: Annotated[
        bool, typer.Option(help="Run retention once a day in this process.")
    ] = True,
    traits: Annotated[
        bool,
        typer.Option(
            help="Recompute traits every CDP_TRAITS_INTERVAL, before due scheduled exports "
            "(in the scheduler's thread: --no-scheduler stops it too)."
        ),
    ] = True,
) -> None:
    """Serve the API; run scheduled exports (every CDP_EXPORT_SCHEDULE_POLL_SECONDS), the traits
    job (every CDP_TRAITS_INTERVAL) and the daily retention job. SIGTERM stops it within
    CDP_SHUTDOWN_GRACE_SECONDS."""
    settings = get_settings()
    stop = threading.Event()
    shutdown = Shutdown(stop, settings.shutdown_grace_seconds)
    threads: list[threading.Thread] = []
    # the jobs open the runtime as the API does, whatever the schema: /readyz reports it
    if retention:
        threads.append(
            threading.Thread(
                target=retention_loop,
                kwargs={"runtime": server_runtime(), "stop": stop},
                name="cdp-retention",
                daemon=True,
            )
        )
    if scheduler:
        job = None
        if traits and settings.traits_interval is not None:
            job = TraitsJob(runtime=server_runtime(), interval=settings.traits_interval)
        threads.append(
            threading.Thread(
                target=scheduler_loop,
                kwargs={
                    "runtime": server_runtime(),
                    "stop": stop,
                    "poll_seconds": settings.export_schedule_poll_seconds,
                    "before_exports": job.run_if_due if job is not None else None,
                },
                name="cdp-export-scheduler",
                daemon=True,
            )
        )
    # No uvicorn access log: it prints each request line with its query string (a lookup's
    # email or phone) outside the redacting structlog pipeline; the app logs every request
    # itself (cdp.api.middleware). ``log_config=None``: uvicorn's own lines go through the
    # logging that create_app configures in each worker.
    config = uvicorn.Config(
        "cdp.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        **UVICORN_OPTIONS,  # h11 with a 16 KiB bound on a request's head (cdp.api.http_server)
    )
    # Bound before the jobs start: a port already taken ends the command here (exit 3), before
    # a retention run or a scheduled export could start in a server that never serves.
    sock = config.bind_socket()
    previous = {sig: signal.signal(sig, shutdown.on_signal) for sig in SIGNALS}
    for thread in threads:
        thread.start()
    console.print(f"cdp API on http://{host}:{port} ({workers} worker(s))")
    try:
        if config.workers > 1:
            supervisor = _Supervisor(config, [sock], shutdown)
            if shutdown.signals:  # (before its own handlers were in place)
                supervisor.should_exit.set()
            supervisor.run()
        else:
            previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, _hangup)
            server = _Server(config, shutdown)
            shutdown.server = server
            server.should_exit = bool(shutdown.signals)
            server.run(sockets=[sock])
            if not server.started:
                raise SystemExit(STARTUP_FAILURE)
    finally:
        _wait(threads, shutdown)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
