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
from cdp.logging import get_logger, redact_text


def main() -> None:
    """Entry point: domain errors become a one-line message and exit status 2, an unreachable
    database exit status 3; anything else is logged through the redacting logger (traceback
    without locals) and exits 1. No raw traceback reaches the terminal."""
    import click
    from sqlalchemy.exc import InterfaceError, OperationalError

    try:
        app(standalone_mode=False)
    except CdpError as exc:
        err_console.print(f"[red]error[/] ({exc.code}): {exc}")
        sys.exit(2)
    except (OperationalError, InterfaceError) as exc:
        reason = str(getattr(exc, "orig", exc)).splitlines()[0][:200]
        err_console.print(f"[red]error[/] (database_unavailable): {redact_text(reason)}")
        sys.exit(3)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except Exception as exc:
        get_logger("cdp.cli").error("command failed", error_type=type(exc).__name__, exc_info=exc)
        err_console.print(
            f"[red]error[/] (internal_error): {type(exc).__name__}; see the log above"
        )
        sys.exit(1)


__all__ = ["app", "main"]
