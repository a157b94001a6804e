"""The cohort retention matrix and the RFM grid as one self-contained HTML page (inline SVG).

No script, no external stylesheet or font: the file opens anywhere, offline, and can be
attached to a report. Cells are shaded by value (retention share, or share of buyers).
"""

from __future__ import annotations

from html import escape

from cdp.traits.metrics import ShopMetrics
from cdp.traits.rfm import python_segment

CELL_W, CELL_H, LEFT, TOP = 46, 24, 150, 40
FONT = "DejaVu Sans, Arial, sans-serif"


def _shade(share: float) -> str:
    """White to deep blue."""
    share = max(0.0, min(1.0, share))
    r = round(255 - share * (255 - 31))
    g = round(255 - share * (255 - 90))
    b = round(255 - share * (255 - 160))
    return f"rgb({r},{g},{b})"


def _ink(share: float) -> str:
    return "#fff" if share > 0.55 else "#222"


def _text(
    x: float,
    y: float,
    s: str,
    *,
    anchor: str = "middle",
    size: int = 11,
    fill: str = "#222",
    weight: str = "normal",
) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" '
        f'font-weight="{weight}" fill="{fill}">{escape(s)}</text>'
    )


def cohort_svg(m: ShopMetrics) -> str:
    """Rows: acquisition month and size; columns: months since the first order."""
    width_cols = max((len(c.active) for c in m.cohorts), default=1)
    w = LEFT + CELL_W * width_cols + 20
    h = TOP + CELL_H * max(len(m.cohorts), 1) + 20
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" font-family="{FONT}" role="img" '
        f'aria-label="cohort retention matrix">',
        _text(LEFT - 8, TOP - 12, "cohort (customers)", anchor="end", weight="bold"),
    ]
    for k in range(width_cols):
        parts.append(_text(LEFT + k * CELL_W + CELL_W / 2, TOP - 12, f"M{k}", weight="bold"))
    if not m.cohorts:
        parts.append(_text(LEFT, TOP + 16, "no customers acquired in the period", anchor="start"))
    # Month 0 is 100% by definition: shade later months against the best later month.
    peak = max((share for c in m.cohorts for share in c.retention[1:]), default=0.0) or 1.0
    for i, row in enumerate(m.cohorts):
        y = TOP + i * CELL_H
        parts.append(_text(LEFT - 8, y + 16, f"{row.cohort} ({row.customers})", anchor="end"))
        for k, share in enumerate(row.retention):
            x = LEFT + k * CELL_W
            tone = 0.0 if k == 0 else share / peak
            fill = "#e8e8e8" if k == 0 else _shade(tone)
            parts.append(
                f'<rect x="{x}" y="{y}" width="{CELL_W - 2}" height="{CELL_H - 2}" '
                f'fill="{fill}"><title>{escape(row.cohort)} M{k}: '
                f"{row.active[k]} of {row.customers}</title></rect>"
            )
            parts.append(_text(x + CELL_W / 2 - 1, y + 15, f"{share:.0%}", fill=_ink(tone)))
    parts.append("</svg>")
    return "".join(parts)


def rfm_svg(m: ShopMetrics) -> str:
    """Recency score (rows, 5 at the top) against FM score (columns), with segment names."""
    cw, ch, left, top = 120, 52, 70, 40
    w, h = left + 5 * cw + 20, top + 5 * ch + 40
    total = sum(sum(r) for r in m.rfm_grid) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" font-family="{FONT}" role="img" aria-label="RFM grid">'
    ]
    peak = max((max(r) for r in m.rfm_grid), default=0) or 1
    for row_i, r in enumerate(range(5, 0, -1)):
        y = top + row_i * ch
        parts.append(_text(left - 10, y + ch / 2 + 4, f"R{r}", anchor="end", weight="bold"))
        for f in range(1, 6):
            x = left + (f - 1) * cw
            n = m.rfm_grid[r - 1][f - 1] if m.rfm_grid else 0
            share = n / peak
            name = python_segment(r, f, f).replace("_", " ").replace("cant", "can't")
            parts.append(
                f'<rect x="{x}" y="{y}" width="{cw - 2}" height="{ch - 2}" '
                f'fill="{_shade(share)}"><title>R{r} FM{f}: {n} buyers</title></rect>'
            )
            parts.append(_text(x + cw / 2, y + 20, name, fill=_ink(share), size=10))
            parts.append(
                _text(x + cw / 2, y + 38, f"{n} ({n / total:.0%})", fill=_ink(share), weight="bold")
            )
    for f in range(1, 6):
        parts.append(
            _text(left + (f - 1) * cw + cw / 2, top + 5 * ch + 16, f"FM{f}", weight="bold")
        )
    parts.append(_text(left + 2.5 * cw, top + 5 * ch + 34, "FM = ceil((F + M) / 2)", size=10))
    parts.append("</svg>")
    return "".join(parts)


def _fmt(v: float | None, pct: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{v:.1%}" if pct else f"{v:,.2f}"


def metrics_html(m: ShopMetrics) -> str:
    """The whole page: the headline metrics, the cohort matrix and the RFM grid."""
    rows = [
        ("active customers", f"{m.active_customers:,}"),
        ("new / returning customers", f"{m.new_customers:,} / {m.returning_customers:,}"),
        ("orders", f"{m.orders:,}"),
        (
            "revenue (new / returning)",
            f"{_fmt(m.revenue)} ({_fmt(m.new_revenue)} / {_fmt(m.returning_revenue)})",
        ),
        ("average order value", _fmt(m.aov)),
        ("purchase frequency", _fmt(m.purchase_frequency)),
        ("repurchase rate", _fmt(m.repurchase_rate, pct=True)),
        ("churn rate", _fmt(m.churn_rate, pct=True)),
    ]
    table = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    period = f"{m.start:%Y-%m-%d} to {m.end:%Y-%m-%d} (UTC, end exclusive)"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>cdp shop metrics</title><style>"
        "body{font-family:sans-serif;margin:24px;color:#222}"
        "th{text-align:left;padding:2px 16px 2px 0;font-weight:normal;color:#555}"
        "td{font-weight:bold}h2{margin-top:28px}</style></head><body>"
        f"<h1>Shop metrics</h1><p>{escape(period)}</p><table>{table}</table>"
        "<h2>Cohort retention</h2><p>Share of each monthly acquisition cohort that bought in "
        "each month since its first order.</p>"
        f"{cohort_svg(m)}<h2>RFM grid</h2><p>Buyers by recency score and combined "
        f"frequency-monetary score, with the segment each cell maps to.</p>{rfm_svg(m)}"
        "</body></html>"
    )
