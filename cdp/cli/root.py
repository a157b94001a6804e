"""The root Typer application and the shared console; commands live in sibling modules."""

from __future__ import annotations

import typer
from rich.console import Console, ConsoleDimensions
from rich.text import Text

from cdp import __version__

app = typer.Typer(
    name="cdp",
    help="cdp: a privacy-compliant customer data platform for e-commerce.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Markup off: text the CLI prints (names, descriptions, sources, error messages) may come from
# users or input files, and ``[/x]`` in it must print as it is, not raise or restyle the output.
# Styled output is built with :func:`styled` instead.
UNBOUNDED_WIDTH = 100_000
"""The width the consoles assume when they do not write to a terminal."""


class _Console(Console):
    """A console that, writing to a file, a pipe or a log rather than a terminal, never cuts a
    table cell with an ellipsis nor wraps a line: a saved proof of consent keeps its timestamps,
    and an error stays one ``error (code): reason`` line. On a terminal, Rich's own sizing."""

    @property
    def size(self) -> ConsoleDimensions:
        measured = super().size
        if self.is_terminal:
            return measured
        return ConsoleDimensions(UNBOUNDED_WIDTH, measured.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


console = _Console(markup=False)
err_console = _Console(stderr=True, markup=False)


def styled(*parts: str | tuple[str, str]) -> Text:
    """Text from plain strings and ``(text, style)`` pairs; nothing in them is read as markup."""
    return Text.assemble(*parts)


def _version(value: bool) -> None:
    if value:
        console.print(f"cdp {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Configure logging once for every command."""
    from cdp.logging import configure_logging

    configure_logging()
