"""Demo steps: two destinations (created by the admin) and two exports (run by the marketer).

* ``demo-email-csv``: a CSV file for ``email_marketing`` that may receive only ``email``;
  the ``win_back`` segment goes there.
* ``demo-meta-audience``: a Meta custom-audience file (normalised, SHA-256 hashed ``email`` and
  ``phone``) for ``ad_audiences``; the ``vip`` segment goes there.

Both refuse an audience smaller than 1% of the demo's customers (at least 20): on the default
shop (10,000 customers) that is 100, so both exports succeed; on a small shop a segment may fall
below it, and the refusal with its counts is shown — nothing is decrypted or written then.

Exports run through :func:`cdp.exports.run.run_export` (consent and restriction checked at send
time, only the destination's fields decrypted, every chunk audited, manifest written) with
``full=True``, so every run of the demo writes a complete file. A destination is reused when one
with the same name and settings exists; otherwise a new one with a free name is created.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from cdp.demo.pipeline import DemoContext, DemoStep
from cdp.demo.steps_access import act_as
from cdp.errors import AudienceTooSmallError
from cdp.exports.destination_audit import destination_recorder
from cdp.exports.destinations import (
    DestinationInfo,
    DestinationSpec,
    create_destination,
    list_destinations,
)
from cdp.exports.outputs import export_dir
from cdp.exports.run import run_export
from cdp.runtime import get_runtime


@dataclass(frozen=True)
class DemoExport:
    """One export the demo runs: a segment, to a destination of this spec."""

    segment: str
    name: str
    kind: str
    purpose: str
    fields: tuple[str, ...]


EXPORTS: Final = (
    DemoExport("win_back", "demo-email-csv", "csv", "email_marketing", ("email",)),
    DemoExport("vip", "demo-meta-audience", "meta", "ad_audiences", ("email", "phone")),
)


@dataclass
class ExportOutcome:
    """What one demo export did: status, manifest counts, output files and manifest path."""

    segment: str
    destination: str
    status: str
    counts: dict[str, int]
    outputs: list[dict[str, Any]] = field(default_factory=list)
    manifest: Path | None = None
    export_id: str | None = None


def minimum_audience(customers: int) -> int:
    """The demo destinations' minimum audience: 1% of the shop's customers, at least 20."""
    return max(20, round(customers / 100))


def _matches(info: DestinationInfo, spec: DestinationSpec) -> bool:
    return (
        info.kind == spec.kind
        and info.purpose == spec.purpose
        and tuple(info.fields) == tuple(spec.fields)
        and info.min_audience == spec.min_audience
        and info.enabled
    )


def _destinations(ctx: DemoContext) -> None:
    rt = get_runtime()
    admin = act_as(ctx, "admin", purpose="operations", resource="destinations", action="create")
    existing = {d.name: d for d in list_destinations(runtime=rt)}
    minimum = minimum_audience(ctx.customers)
    chosen: dict[str, DestinationInfo] = {}
    lines: list[str] = []
    for export in EXPORTS:
        spec = DestinationSpec(
            name=export.name,
            kind=export.kind,
            purpose=export.purpose,
            fields=export.fields,
            min_audience=minimum,
        )
        candidates = [export.name] + [f"{export.name}-{n}" for n in range(2, 100)]
        info = next(
            (existing[n] for n in candidates if n in existing and _matches(existing[n], spec)),
            None,
        )
        verb = "reused"
        if info is None:
            name = next(n for n in candidates if n not in existing)
            spec = replace(spec, name=name)
            made = create_destination(
                runtime=rt,
                spec=spec,
                created_by=admin.principal_name,
                audit=destination_recorder(rt, admin, "create"),
            )
            info = made.destination
            existing[name] = info
            verb = "created"
        chosen[export.segment] = info
        lines.append(f"{verb} {info.name}")
        ctx.say(
            f"{verb} {info.name}: {info.kind} for {info.purpose}, fields {', '.join(info.fields)}, "
            f"minimum audience {info.min_audience}"
        )
    ctx.results["destinations"] = chosen
    ctx.done["destinations"] = "; ".join(lines) + f" (minimum audience {minimum})"


def _manifest_path(info: DestinationInfo, export_id: str) -> Path:
    return export_dir(get_runtime()) / info.name / f"{export_id}.manifest.json"


def _counts_line(counts: dict[str, int]) -> str:
    return (
        f"members {counts.get('members', 0):,}, "
        f"excluded for consent {counts.get('excluded_consent', 0):,}, "
        f"excluded for restriction {counts.get('excluded_restriction', 0):,}, "
        f"sent {counts.get('sent', 0):,}"
    )


def _exports(ctx: DemoContext) -> None:
    rt = get_runtime()
    chosen: dict[str, DestinationInfo] = ctx.results["destinations"]
    outcomes: list[ExportOutcome] = []
    for export in EXPORTS:
        dest = chosen[export.segment]
        marketer = act_as(ctx, "marketer", purpose=dest.purpose, resource="exports", action="run")
        label = f"{export.segment} -> {dest.name}"
        try:
            result = run_export(
                runtime=rt, ctx=marketer, segment=export.segment, destination=dest.name, full=True
            )
        except AudienceTooSmallError as exc:
            ctx.say(
                f"{label}: refused, audience below the minimum of {dest.min_audience} "
                f"({_counts_line(exc.counts)}); nothing was decrypted or written"
            )
            outcomes.append(ExportOutcome(export.segment, dest.name, "refused", dict(exc.counts)))
            continue
        counts = result.counts.as_dict()
        manifest = _manifest_path(dest, result.export_id)
        adds = [o for o in result.manifest["outputs"] if o["op"] == "add"]
        ctx.say(f"{label}: {result.status}, {_counts_line(counts)}")
        for out in adds:
            ctx.say(f"  {out['rows']:,} rows -> {out['path']}")
        ctx.say(f"  manifest -> {manifest}")
        outcomes.append(
            ExportOutcome(
                export.segment,
                dest.name,
                result.status,
                counts,
                list(result.manifest["outputs"]),
                manifest,
                result.export_id,
            )
        )
    ctx.results["exports"] = outcomes
    ctx.done["exports"] = "; ".join(
        f"{o.segment} -> {o.destination}: {o.status}, sent {o.counts.get('sent', 0):,}"
        + "".join(f" ({out['path']})" for out in o.outputs if out["op"] == "add")
        for o in outcomes
    )


STEPS: Final = [
    DemoStep("destinations", "Create the export destinations (as the admin)", _destinations),
    DemoStep("exports", "Export segments to them (as the marketer)", _exports),
]
