"""``cdp segments``: create, update, list, show, compute, diff and members.

Member lists and diffs carry (pseudonymous) subject ids, which are personal data: those two
commands authenticate (``--token``/``CDP_TOKEN``, ``--purpose``) and are audited like the API.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError
from rich.table import Table
from rich.text import Text

from cdp.cli.access import PurposeOption, TokenOption, cli_access
from cdp.cli.root import app, console, err_console
from cdp.errors import CdpError, InvalidInputError
from cdp.jsonio import MAX_DEPTH, too_deep
from cdp.runtime import get_runtime
from cdp.segments import membership, service
from cdp.segments.rules import INT_MAX
from cdp.segments.views import ComputationView, SegmentIn
from cdp.validation import safe_location

segments_app = typer.Typer(help="Segments: rules over traits, orders and consent.")
app.add_typer(segments_app, name="segments")


MAX_RULE_BYTES = 1024 * 1024
"""The largest rule file read (the API's body limit, CDP_MAX_REQUEST_BYTES, defaults to this)."""


def _rule_text(text: str) -> bytes:
    """The rule's bytes: ``text`` itself, or the file ``@path`` names."""
    if not text.startswith("@"):
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:  # undecodable bytes in the argument
            raise InvalidInputError("the rule is not UTF-8 text", field="rule") from None
    try:
        with Path(text[1:]).open("rb") as handle:
            raw = handle.read(MAX_RULE_BYTES + 1)  # bounded: @/dev/zero would never end
    except OSError as exc:  # the reason only: the path is the caller's input
        reason = exc.strerror or type(exc).__name__
        raise InvalidInputError(f"the rule file cannot be read: {reason}", field="rule") from None
    if len(raw) > MAX_RULE_BYTES:
        raise InvalidInputError(
            f"the rule file is larger than {MAX_RULE_BYTES // 1024} KiB", field="rule"
        )
    return raw


def _load_rule(text: str) -> dict[str, Any]:
    raw = _rule_text(text)
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise InvalidInputError("the rule is not UTF-8 text", field="rule") from None
    except RecursionError:
        raise InvalidInputError(
            f"the rule nests more than {MAX_DEPTH} levels", field="rule"
        ) from None
    except json.JSONDecodeError:
        raise InvalidInputError("the rule is not valid JSON", field="rule") from None
    if too_deep(raw, data):
        raise InvalidInputError(f"the rule nests more than {MAX_DEPTH} levels", field="rule")
    if not isinstance(data, dict):
        raise InvalidInputError("the rule must be a JSON object", field="rule")
    return data


def _segment_in(name: str, rule: str, description: str | None) -> SegmentIn:
    data = _load_rule(rule)
    try:
        return SegmentIn(name=name, description=description, rule=data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = safe_location(err["loc"], err["type"]) or "segment"
        if where == "name":
            raise InvalidInputError(
                "name must be a lowercase letter then lowercase letters, digits or _ "
                "(at most 64 characters)",
                field="name",
            ) from None
        raise InvalidInputError(f"{where}: {err['msg']}", field=where) from None


RuleOption = typer.Option(..., "--rule", help="The rule as JSON, or @file.json.")
DescriptionOption = typer.Option(
    None, "--description", help="At most 512 characters; omitted on update keeps the current one."
)


@segments_app.command("create")
def create(name: str, rule: str = RuleOption, description: str | None = DescriptionOption) -> None:
    """Create a segment (version 1)."""
    view = service.create_segment(
        runtime=get_runtime(), data=_segment_in(name, rule, description), actor="cli"
    )
    console.print(f"segment {view.name} created at version {view.version}")


@segments_app.command("update")
def update(name: str, rule: str = RuleOption, description: str | None = DescriptionOption) -> None:
    """Change a segment's rule (a new version when it differs) or its description."""
    view = service.update_segment(
        runtime=get_runtime(), data=_segment_in(name, rule, description), actor="cli"
    )
    console.print(f"segment {view.name} at version {view.version}")


@segments_app.command("list")
def list_() -> None:
    """Every segment with its version and last computation."""
    table = Table("name", "version", "builtin", "members", "computed at", "description")
    for s in service.list_segments(runtime=get_runtime()):
        c = s.last_computation
        table.add_row(
            s.name,
            str(s.version),
            "yes" if s.builtin else "",
            f"{c.member_count:,}" if c else "-",
            f"{c.computed_at:%Y-%m-%d %H:%M}" if c else "-",
            s.description,
        )
    console.print(table)


@segments_app.command("show")
def show(name: str) -> None:
    """A segment's rule, its versions and last computation (JSON)."""
    view = service.get_segment(runtime=get_runtime(), name=name)
    console.print_json(view.model_dump_json())


@segments_app.command("compute")
def compute(
    name: str | None = typer.Argument(None, help="Segment name (omit with --all)."),
    all_: bool = typer.Option(False, "--all", help="Compute every segment."),
) -> None:
    """Evaluate the rule into a new membership snapshot; print adds and removes."""
    rt = get_runtime()
    if all_ == (name is not None):
        raise InvalidInputError("give a segment name or --all", field="name")
    if not all_:
        _print_computation(str(name), membership.compute_segment(runtime=rt, name=str(name)))
        return
    failed = 0
    names = [s.name for s in service.list_segments(runtime=rt)]
    for n in names:  # one segment that cannot be computed does not hold back the others
        try:
            c = membership.compute_segment(runtime=rt, name=n)
        except CdpError as exc:
            failed += 1
            # plain parts, no markup: the message names clauses such as rule.all[1]
            err_console.print(Text.assemble(("error", "red"), f" ({exc.code}): {n}: {exc}"))
            continue
        _print_computation(n, c)
    if failed:
        raise InvalidInputError(
            f"{failed} of {len(names)} segments not computed (see above)", field="name"
        )


def _print_computation(name: str, c: ComputationView) -> None:
    console.print(
        f"{name}: {c.member_count:,} members (+{c.added_count:,} / -{c.removed_count:,}) "
        f"computation {c.id}"
    )


@segments_app.command("diff")
def diff(
    name: str,
    from_id: int | None = typer.Option(
        None, "--from", min=1, max=INT_MAX, help="Older computation id (default: before --to)."
    ),
    to_id: int | None = typer.Option(
        None, "--to", min=1, max=INT_MAX, help="Newer computation id (default: last)."
    ),
    limit: int = typer.Option(1000, "--limit", min=1, max=100_000),
    token: TokenOption = None,
    purpose: PurposeOption = None,
) -> None:
    """Who joined and who left (pseudonymous ids; audited)."""
    rt = get_runtime()
    ctx = cli_access(runtime=rt, token=token, purpose=purpose, resource="segments", action="read")
    d = membership.diff_segment(
        runtime=rt, ctx=ctx, name=name, from_id=from_id, to_id=to_id, limit=limit
    )
    console.print_json(d.model_dump_json())


@segments_app.command("members")
def members(
    name: str,
    page_size: int = typer.Option(100, "--page-size", min=1),
    cursor: str | None = typer.Option(None, "--cursor"),
    token: TokenOption = None,
    purpose: PurposeOption = None,
) -> None:
    """One page of the last snapshot's members (pseudonymous ids; audited)."""
    rt = get_runtime()
    ctx = cli_access(runtime=rt, token=token, purpose=purpose, resource="segments", action="read")
    page = membership.members(runtime=rt, ctx=ctx, name=name, page_size=page_size, cursor=cursor)
    console.print_json(page.model_dump_json())
