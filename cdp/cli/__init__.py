"""The ``cdp`` command line. Each command group lives in its own module and registers itself on
the root application (:mod:`cdp.cli.root`).

A command imports only its own module: ``cdp audit verify`` does not pay for the CLV models,
the demo generator or the API's dependencies, which importing every group costs (seconds on a
small machine). :data:`COMMANDS` names the module of every top-level command; ``cdp`` alone,
``--help`` and an unknown name load them all, for the full listing or click's error.
``from cdp.cli import app`` (tests, embedding) gets the application with every command.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

#: Top-level command -> the module under ``cdp.cli`` that registers it
#: (``tests/cli/test_cli_foundation.py`` checks this against what the modules register).
COMMANDS: dict[str, str] = {
    "audit": "audit",
    "clv": "clv",
    "consent": "consent",
    "demo": "demo",
    "destinations": "destinations",
    "export": "export",
    "generate": "demo",
    "ingest": "ingest",
    "init": "setup",
    "keys": "keys",
    "metrics": "metrics",
    "principals": "principals",
    "privacy": "privacy",
    "profiles": "profiles",
    "retention": "retention",
    "segments": "segments",
    "serve": "serve",
    "sources": "ingest",
    "traits": "traits",
}


def register(names: list[str] | None = None) -> None:
    """Import the modules of the commands ``names`` (every command when None)."""
    wanted = COMMANDS.values() if names is None else (COMMANDS[n] for n in names)
    for module in sorted(set(wanted)):
        importlib.import_module(f"cdp.cli.{module}")


def command_of(argv: list[str]) -> str | None:
    """The top-level command ``argv`` runs, when it is one of :data:`COMMANDS` (the root takes
    only flags, so it is the first argument that is not one)."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def __getattr__(name: str) -> Any:
    if name == "app":
        from cdp.cli.root import app

        register()
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _usage_errors() -> tuple[type[Exception], ...]:
    """Click's usage errors, and typer's own copy of them (newer typer releases carry their own
    click, whose classes are not click's: a bad option raised one of those)."""
    import click
    import typer

    found: list[type[Exception]] = [click.ClickException]
    found += [c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"]
    return tuple(dict.fromkeys(found))


def _aborts() -> tuple[type[Exception], ...]:
    import click
    import typer

    return tuple(dict.fromkeys([click.exceptions.Abort, typer.Abort]))


def main() -> None:
    """Entry point: domain errors become a one-line message and exit status 2, an unreachable
    database exit status 3, an interruption (Ctrl+C, even while the commands are loading) 130;
    anything else is logged through the redacting logger (traceback without locals) and exits
    1. No raw traceback reaches the terminal."""
    try:
        _main()
    except KeyboardInterrupt:  # before click runs (imports, registering the commands)
        sys.stderr.write("\nAborted!\n")
        sys.exit(130)


def _main() -> None:
    from sqlalchemy.exc import InterfaceError, OperationalError

    from cdp.cli.root import app, err_console, styled
    from cdp.errors import CdpError
    from cdp.logging import configure_fallback_logging, get_logger, redact_text

    configure_fallback_logging()  # until the root callback configures it from the settings
    command = command_of(sys.argv[1:])
    register([command] if command is not None else None)
    try:
        # Not standalone, so that the errors below are ours to print; click then *returns* the
        # status of a ``typer.Exit(n)`` instead of exiting with it, so it is passed on here (a
        # failed ``cdp audit verify`` exited 0).
        code = app(standalone_mode=False)
    except CdpError as exc:
        err_console.print(styled(("error", "red"), f" ({exc.code}): {exc}"))
        sys.exit(2)
    except (OperationalError, InterfaceError) as exc:
        reason = str(getattr(exc, "orig", exc)).splitlines()[0][:200]
        err_console.print(
            styled(("error", "red"), f" (database_unavailable): {redact_text(reason)}")
        )
        sys.exit(3)
    except _aborts():
        sys.exit(130)
    except _usage_errors() as exc:
        exc.show()  # type: ignore[attr-defined]
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]
    except SystemExit:
        raise
    except Exception as exc:
        get_logger("cdp.cli").error("command failed", error_type=type(exc).__name__, exc_info=exc)
        err_console.print(
            styled(("error", "red"), f" (internal_error): {type(exc).__name__}; see the log above")
        )
        sys.exit(1)
    if isinstance(code, int) and not isinstance(code, bool) and code:
        sys.exit(code)


__all__ = ["app", "main"]
