"""The ``cdp`` command line. Each command group lives in its own module and registers itself."""

from __future__ import annotations

import sys

from cdp.cli import (  # noqa: F401  (command registration)  # noqa: F401  (command registration)  # noqa: F401  (command registration)  # noqa: F401  (command registration)  # noqa: F401  (command registration)
    audit,
    clv,
    consent,
    demo,
    destinations,
    export,
    ingest,
    keys,
    metrics,
    principals,
    privacy,
    profiles,
    retention,
    segments,
    serve,
    setup,
    traits,
)
from cdp.cli.app import app, err_console
from cdp.errors import CdpError


def main() -> None:
    """Entry point: domain errors become a one-line message and exit status 2, no traceback."""
    try:
        app(standalone_mode=False)
    except CdpError as exc:
        err_console.print(f"[red]error[/] ({exc.code}): {exc}")
        sys.exit(2)
    except SystemExit:
        raise
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(130)
        raise


__all__ = ["app", "main"]
