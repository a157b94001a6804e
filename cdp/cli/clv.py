"""``cdp clv fit`` and ``cdp clv predict``: BG/NBD + Gamma-Gamma on the order history."""

from __future__ import annotations

import json
from datetime import UTC, timedelta

import typer

from cdp.cli.metrics import parse_day
from cdp.cli.root import app, console
from cdp.clock import utcnow
from cdp.runtime import get_runtime
from cdp.traits import clv
from cdp.traits.config import load_traits_config

clv_app = typer.Typer(help="Customer lifetime value: fit the models, store predictions.")
app.add_typer(clv_app, name="clv")


@clv_app.command("fit")
def fit(
    calibration_end: str | None = typer.Option(
        None, "--calibration-end", help="Last day of data used (default: yesterday)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the fit as JSON."),
    from_orders: bool = typer.Option(
        False,
        "--from-orders",
        help="Summarise every completed order, even when today's traits run stored the facts.",
    ),
) -> None:
    """Fit BG/NBD and Gamma-Gamma; print parameters, log-likelihoods and sample sizes.

    The customer summaries come from the order facts that today's `cdp traits compute` stored
    when they cover the calibration end (yesterday), else from every completed order."""
    now = utcnow()
    day = (
        parse_day(calibration_end, "--calibration-end").date()
        if calibration_end
        else now.astimezone(UTC).date() - timedelta(days=1)
    )
    with get_runtime().data_engine.begin() as conn:
        result = clv.fit(conn, calibration_end=day, now=now, from_facts=not from_orders)
    if as_json:
        console.print_json(json.dumps(result.to_dict()))
        return
    bg = result.bgnbd
    source = (
        "the order facts of today's traits run"
        if result.source == "facts"
        else "every completed order"
    )
    console.print(
        f"calibration end {day.isoformat()} (fit {result.fit_id}; summaries from {source})"
    )
    p = bg.params
    console.print(
        f"BG/NBD      r={p.r:.6g} alpha={p.alpha:.6g} a={p.a:.6g} b={p.b:.6g}  "
        f"log-likelihood={bg.log_likelihood:.6f}  customers={bg.n_customers:,}  "
        f"converged={bg.converged}"
    )
    gg = result.gamma_gamma
    if gg is None:
        console.print(f"Gamma-Gamma not fitted: {result.gamma_gamma_error}")
    else:
        g = gg.params
        console.print(
            f"Gamma-Gamma p={g.p:.6g} q={g.q:.6g} gamma={g.gamma:.6g}  "
            f"log-likelihood={gg.log_likelihood:.6f}  repeat customers={gg.n_repeat_customers:,}"
            f" of {gg.n_customers:,}  converged={gg.converged}"
        )


@clv_app.command("predict")
def predict(
    horizon: float = typer.Option(52.0, "--horizon", help="Horizon in weeks."),
    from_orders: bool = typer.Option(
        False,
        "--from-orders",
        help="Summarise every completed order, even when today's traits run stored the facts.",
    ),
) -> None:
    """Store expected purchases, P(alive), churn and CLV for every buyer (latest fit), on the
    summaries up to yesterday (from today's stored order facts when there are, as for fit)."""
    rt = get_runtime()
    cfg = load_traits_config(rt.settings)
    with rt.data_engine.begin() as conn:
        n = clv.predict(
            conn, cfg=cfg.clv, now=utcnow(), horizon_weeks=horizon, from_facts=not from_orders
        )
    console.print(f"CLV predictions stored for {n:,} buyers over {horizon:g} weeks")
