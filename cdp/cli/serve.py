"""``cdp serve``: the HTTP API under uvicorn, plus the scheduled-exports and retention threads.

The API app is built by ``cdp.api.app:create_app`` in each worker. The export scheduler runs in
this (the parent) process only, in one background thread, so that however many workers serve
requests, scheduled exports run one at a time (and several ``cdp serve`` hosts never run one
occurrence twice: each claims it first, see :mod:`cdp.exports.schedule`).
"""

from __future__ import annotations

import threading
from typing import Annotated

import typer
import uvicorn

from cdp.api.http_server import UVICORN_OPTIONS
from cdp.cli.root import app, console
from cdp.exports.schedule import scheduler_loop
from cdp.jobs import retention_loop
from cdp.runtime import get_runtime
from cdp.settings import get_settings


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
    scheduler: Annotated[bool, typer.Option(help="Run scheduled exports in this process.")] = True,
    retention: Annotated[
        bool, typer.Option(help="Run retention once a day in this process.")
    ] = True,
) -> None:
    """Serve the API; run scheduled exports (every CDP_EXPORT_SCHEDULE_POLL_SECONDS) and the
    daily retention job."""
    stop = threading.Event()
    threads: list[threading.Thread] = []
    if retention:
        threads.append(
            threading.Thread(
                target=retention_loop,
                kwargs={"runtime": get_runtime(), "stop": stop},
                name="cdp-retention",
                daemon=True,
            )
        )
    if scheduler:
        threads.append(
            threading.Thread(
                target=scheduler_loop,
                kwargs={
                    "runtime": get_runtime(),
                    "stop": stop,
                    "poll_seconds": get_settings().export_schedule_poll_seconds,
                },
                name="cdp-export-scheduler",
                daemon=True,
            )
        )
    for thread in threads:
        thread.start()
    console.print(f"cdp API on http://{host}:{port} ({workers} worker(s))")
    try:
        # No uvicorn access log: it prints each request line with its query string (a lookup's
        # email or phone) outside the redacting structlog pipeline; the app logs every request
        # itself (cdp.api.middleware). ``log_config=None``: uvicorn's own lines go through the
        # logging that create_app configures in each worker.
        uvicorn.run(
            "cdp.api.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            access_log=False,
            log_config=None,
            **UVICORN_OPTIONS,  # h11 with a 16 KiB bound on a request's head (cdp.api.http_server)
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
