"""``cdp demo`` as a list of steps: generate the shop, initialise, ingest each file, summarise.

Later capabilities add their own step (compute traits, build segments, run an export, print the
audit report) by registering it from the module that defines their CLI commands — every CLI module
is imported before a command runs, so the step is in place when ``cdp demo`` starts::

    from cdp.demo.pipeline import DemoStep, register_step

    def _traits(ctx: DemoContext) -> None:
        n = compute_traits(runtime=get_runtime())
        ctx.facts["subjects with traits"] = f"{n:,}"

    register_step(DemoStep("traits", "Compute RFM, CLV and lifecycle traits", _traits))

Steps run in list order; ``register_step`` puts a step before the final ``summary`` (or after
the step named by ``after``). A step reads what earlier steps left in ``ctx.results``, says what
it did in one line through ``ctx.done[step name]`` (counts and file paths only: the final table
of ``cdp demo`` lists them with each step's duration) and may add lines through ``ctx.facts``.

The steps after ingestion (traits, principals, segments, exports, profile reads, erasure, audit)
live in ``cdp/demo/steps_*.py`` and register themselves when imported
(:func:`register_product_steps`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from cdp.clock import utcnow
from cdp.demo.generator import generate_shop

DEFAULT_CUSTOMERS = 10_000
DEFAULT_ORDERS = 60_000


@dataclass
class DemoContext:
    """What the steps share: parameters, UI callbacks, results and summary facts."""

    out_dir: Path
    customers: int = DEFAULT_CUSTOMERS
    orders: int = DEFAULT_ORDERS
    seed: int = 7
    end: date | None = None
    """The shop's last day (its two years end there); ``None``: yesterday (UTC), so that the
    traits, segments and exports, computed at today's clock, find a shop as active as a real
    one (a shop that ended months ago has no new customers and, a year on, no win-back list)."""
    say: Callable[[str], None] = print
    ingest: Callable[[str, Path, int | None], Any] | None = None
    """(kind, file, expected records) -> a summary; the CLI passes one with a progress bar."""
    initialize: Callable[[], None] | None = None
    home: Path | None = None
    """The installation's home (``CDP_HOME``): tokens, checkpoint and reports go to HOME/demo."""
    results: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, str] = field(default_factory=dict)
    done: dict[str, str] = field(default_factory=dict)
    """Step name -> what it did, in one line (counts and file paths, never personal data)."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Step name -> how long it took."""

    @property
    def work_dir(self) -> Path:
        """Where the demo keeps what it produces besides the shop: HOME/demo."""
        return self.home / "demo" if self.home is not None else self.out_dir


@dataclass(frozen=True)
class DemoStep:
    name: str
    title: str
    run: Callable[[DemoContext], None]


def _generate(ctx: DemoContext) -> None:
    end = ctx.end or (utcnow().date() - timedelta(days=1))
    shop = generate_shop(
        ctx.out_dir, customers=ctx.customers, orders=ctx.orders, seed=ctx.seed, end=end
    )
    ctx.facts["shop period"] = f"two years ending {end.isoformat()}"
    ctx.results["shop"] = shop
    ctx.done["generate"] = (
        f"{shop.customer_count:,} customers, {shop.order_count:,} orders -> {ctx.out_dir}"
    )
    ctx.say(
        f"generated {shop.customer_count:,} customers, {shop.order_count:,} orders, "
        f"{shop.consent_count:,} consent entries, {shop.event_count:,} events in {ctx.out_dir}"
    )


def _init(ctx: DemoContext) -> None:
    if ctx.initialize is not None:
        ctx.initialize()
        ctx.done["init"] = "schema and keys ready"


_COUNTS = {
    "customers": "customer_count",
    "orders": "order_count",
    "consents": "consent_count",
    "events": "event_count",
}


def _ingest(kind: str) -> Callable[[DemoContext], None]:
    def run(ctx: DemoContext) -> None:
        if ctx.ingest is None:
            raise RuntimeError("the demo needs an ingest callback")
        shop = ctx.results["shop"]
        path: Path = getattr(shop, kind)
        expected = getattr(shop, _COUNTS[kind])
        summary = ctx.ingest(kind, path, expected)
        ctx.results.setdefault("ingest", []).append(summary)
        counts = ("read", "inserted", "updated", "duplicates", "rejected")
        if all(hasattr(summary, c) for c in counts):
            line = ", ".join(f"{c} {getattr(summary, c):,}" for c in counts)
            expired = getattr(summary, "expired", 0)
            if expired:  # past every retention window on arrival: neither stored nor rejected
                line += f", expired {expired:,}"
            ctx.done[f"ingest-{kind}"] = line

    return run


def _summary(ctx: DemoContext) -> None:
    """Nothing to do here: the CLI prints ``ctx.results['ingest']`` and ``ctx.facts``."""


STEPS: list[DemoStep] = [
    DemoStep("generate", "Generate the demo shop", _generate),
    DemoStep("init", "Create the databases and keys", _init),
    DemoStep("ingest-customers", "Ingest customers", _ingest("customers")),
    DemoStep("ingest-orders", "Ingest orders", _ingest("orders")),
    DemoStep("ingest-consents", "Ingest consent history", _ingest("consents")),
    DemoStep("ingest-events", "Ingest behaviour events", _ingest("events")),
    DemoStep("summary", "Summarise", _summary),
]


def register_step(step: DemoStep, *, after: str | None = None) -> None:
    """Add ``step`` before ``summary`` (or right after the step named ``after``); re-registering
    a name replaces it in place."""
    for i, existing in enumerate(STEPS):
        if existing.name == step.name:
            STEPS[i] = step
            return
    names = [s.name for s in STEPS]
    index = names.index(after) + 1 if after is not None else names.index("summary")
    STEPS.insert(index, step)


def register_product_steps() -> None:
    """Register the steps that walk the rest of the product (idempotent: re-registering a step
    replaces it in place). Imported here, not at module level: the step modules import this one.
    """
    from cdp.demo import steps_access, steps_analytics, steps_audit, steps_exports, steps_privacy

    # traits + segments, principals, destinations + exports, profile reads + erasure, audit
    for module in (steps_analytics, steps_access, steps_exports, steps_privacy, steps_audit):
        for step in module.STEPS:
            register_step(step)


def run_demo(ctx: DemoContext, steps: list[DemoStep] | None = None) -> DemoContext:
    """Run the steps in order, saying each one's title before and its duration after."""
    for step in steps if steps is not None else list(STEPS):
        ctx.say(f"[{step.name}] {step.title}")
        started = time.perf_counter()
        step.run(ctx)
        ctx.seconds[step.name] = time.perf_counter() - started
        ctx.say(f"[{step.name}] done in {ctx.seconds[step.name]:.1f}s")
    return ctx
