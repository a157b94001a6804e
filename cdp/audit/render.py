"""Rendering reports with the Jinja2 templates in ``audit/`` (Markdown, HTML, CSV).

HTML is autoescaped and self-contained: the reads-per-day chart is an inline SVG drawn here, no
script and nothing fetched from a CDN. CSV cells are quoted, and a cell that a spreadsheet would
run as a formula is prefixed with a quote.
"""

from __future__ import annotations

import os
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Final

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from cdp.audit.reports import Report
from cdp.errors import ConfigurationError, InvalidInputError
from cdp.validation import defuse

FORMATS: Final = {"md": "text/markdown", "html": "text/html", "csv": "text/csv"}


def templates_dir() -> Path:
    """``$CDP_AUDIT_TEMPLATES`` if set, else the repository's ``audit/`` directory."""
    configured = os.environ.get("CDP_AUDIT_TEMPLATES")
    directory = Path(configured) if configured else Path(__file__).resolve().parents[2] / "audit"
    if not (directory / "report.md.j2").is_file():
        raise ConfigurationError(f"report templates not found in {directory}")
    return directory


def csv_cell(value: object) -> str:
    """One CSV cell: quoted, quotes doubled, formulas defused."""
    text = defuse("" if value is None else str(value))
    return '"' + text.replace('"', '""') + '"'


def bar_chart(per_day: list[tuple[date, int]], *, width: int = 720, height: int = 180) -> Markup:
    """An inline SVG bar chart of reads per day (empty string when there is nothing to draw)."""
    if not per_day:
        return Markup("")
    top = max(n for _, n in per_day) or 1
    pad, base = 30, height - 24
    step = (width - pad) / len(per_day)
    bar = max(step * 0.8, 1.0)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="reads per day">',
        f'<text x="0" y="12" font-size="11">{top}</text>',
        f'<line x1="{pad}" y1="{base}" x2="{width}" y2="{base}" stroke="#888"/>',
    ]
    for i, (day, n) in enumerate(per_day):
        h = (base - 16) * n / top
        x = pad + i * step
        parts.append(
            f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
            f'fill="#3b6ea5"><title>{escape(day.isoformat())}: {n}</title></rect>'
        )
    first, last = per_day[0][0].isoformat(), per_day[-1][0].isoformat()
    parts.append(f'<text x="{pad}" y="{height - 6}" font-size="11">{escape(first)}</text>')
    parts.append(
        f'<text x="{width}" y="{height - 6}" font-size="11" text-anchor="end">{escape(last)}</text>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (numbers and escaped text only)


@lru_cache(maxsize=4)
def _environment(directory: str) -> Environment:
    env = Environment(
        loader=FileSystemLoader(directory),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["csv"] = csv_cell
    return env


def render(report: Report, fmt: str) -> str:
    """The report as Markdown (``md``), HTML (``html``) or CSV (``csv``)."""
    if fmt not in FORMATS:
        raise InvalidInputError(f"format must be one of {', '.join(FORMATS)}", field="format")
    template = _environment(str(templates_dir())).get_template(f"report.{fmt}.j2")
    chart = bar_chart(report.per_day) if fmt == "html" else Markup("")
    return template.render(r=report, chart=chart)
