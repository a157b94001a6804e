"""Demo step: the people who use cdp, as principals with bearer tokens.

One principal per role the policy knows and the demo needs (admin for destinations, marketer,
support, analyst, dpo, auditor), created through :mod:`cdp.access.principals` exactly like
``cdp principals create``. Their tokens go to ``HOME/demo/tokens.json`` (mode 0600) and never to
the terminal, so a user can try the CLI and API as each role afterwards::

    export CDP_TOKEN=$(jq -r .principals.support.token .cdp/demo/tokens.json)
    cdp profiles find --email ... --purpose support

A re-run reuses every principal whose token in the file still authenticates with its role; for a
role whose token is missing, expired or revoked it creates a new principal with a free name
(``demo-marketer-2``, ...), since a token is shown only once and cannot be recovered.

Every later step acts through :func:`act_as`: the same authentication, policy decision and
``denied`` audit record as a CLI command given ``--token`` and ``--purpose``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Connection

from cdp.access import principals
from cdp.access.context import AccessContext
from cdp.clock import utcnow
from cdp.demo.pipeline import DemoContext, DemoStep
from cdp.errors import AuthenticationError, NotFoundError
from cdp.runtime import get_runtime

DEMO_ROLES: Final = ("admin", "marketer", "support", "analyst", "dpo", "auditor")
TOKEN_LIFETIME: Final = timedelta(days=30)
TOKENS_FILE: Final = "tokens.json"


def tokens_path(ctx: DemoContext) -> Path:
    return ctx.work_dir / TOKENS_FILE


def _load(path: Path) -> dict[str, dict[str, str]]:
    """role -> {name, token} from an earlier run's file (empty when missing or unreadable)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        entries = doc["principals"]
        return {
            str(role): {"name": str(e["name"]), "token": str(e["token"])}
            for role, e in entries.items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def write_private_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by the owner only (0600): through a new
    temporary file beside it (created exclusively, never through a link) renamed over it, so a
    link planted at ``path`` is replaced, not written through."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")  # 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(tmp).unlink()
        raise


def write_private_json(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` to ``path`` as :func:`write_private_text` does."""
    write_private_text(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")


def _still_valid(role: str, entry: dict[str, str]) -> bool:
    try:
        info = principals.authenticate(runtime=get_runtime(), token=entry["token"])
    except AuthenticationError:
        return False
    return info.name == entry["name"] and role in info.roles


def _why_replaced(role: str, entry: dict[str, str] | None) -> str:
    """Why the file's token for ``role`` could not be reused (said when a new principal is made
    for it): the cause the principal's own record shows."""
    if entry is None:
        return "no token for it in the file"
    try:
        info = principals.get_by_name(runtime=get_runtime(), name=entry.get("name", ""))
    except NotFoundError:
        return f"{entry.get('name')} no longer exists"
    if info.revoked_at is not None:
        return f"{info.name} was revoked"
    if info.expires_at is not None and info.expires_at <= utcnow():
        return f"{info.name}'s token expired"
    if role not in info.roles:
        return f"{info.name} no longer holds the role"
    return f"the file's token for {info.name} does not match it"


def _recorded(conn: Connection, p: principals.PrincipalInfo) -> None:
    """The creation's audit record, as ``cdp principals create`` writes it (under
    ``system:operator``, in the creating transaction)."""
    from cdp.cli.principals import principal_recorder

    principal_recorder(get_runtime(), "create")(conn, p)


def _free_name(role: str, taken: set[str]) -> str:
    base = f"demo-{role}"
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def _principals(ctx: DemoContext) -> None:
    rt = get_runtime()
    path = tokens_path(ctx)
    known = _load(path)
    taken = {p.name for p in principals.list_principals(runtime=rt)}
    tokens: dict[str, dict[str, str]] = {}
    reused: list[str] = []
    created: list[str] = []
    replaced: list[str] = []
    for role in DEMO_ROLES:
        entry = known.get(role)
        if entry is not None and _still_valid(role, entry):
            tokens[role] = entry
            reused.append(entry["name"])
            continue
        if known:  # a re-run: say why this role gets a new principal
            replaced.append(f"{role}: {_why_replaced(role, entry)}")
        name = _free_name(role, taken)
        made = principals.create(
            runtime=rt,
            name=name,
            roles=[role],
            kind="person",
            expires_in=TOKEN_LIFETIME,
            audit=_recorded,
        )
        taken.add(name)
        tokens[role] = {"name": name, "token": made.token}
        created.append(name)
    write_private_json(
        path,
        {
            "note": "Bearer tokens of the cdp demo principals (use as --token or CDP_TOKEN). "
            "Keep this file private; the tokens expire 30 days after creation.",
            "principals": tokens,
        },
    )
    ctx.results["tokens"] = tokens
    ctx.results["tokens_path"] = path
    if created:
        renamed = [n for n in created if n not in {f"demo-{r}" for r in DEMO_ROLES}]
        if replaced:
            why = f" ({'; '.join(replaced)})"
        elif renamed:  # no tokens file (lost or deleted), but the earlier principals exist
            why = " (new names: the tokens of the earlier demo principals are not in the file)"
        else:
            why = ""
        ctx.say("created " + ", ".join(created) + why)
    if reused:
        ctx.say("reused " + ", ".join(reused) + f" (tokens from {path})")
    ctx.say(f"tokens written to {path} (mode 0600; not shown here)")
    ctx.done["principals"] = f"{len(created)} created, {len(reused)} reused; tokens in {path}"


def principal_name(ctx: DemoContext, role: str) -> str:
    """The name of the demo principal holding ``role``."""
    return str(ctx.results["tokens"][role]["name"])


def act_as(
    ctx: DemoContext,
    role: str,
    *,
    purpose: str,
    resource: str,
    action: str,
    subject_ids: Iterable[str] = (),
) -> AccessContext:
    """Authenticate as the demo principal holding ``role`` and decide ``action`` on ``resource``
    for ``purpose`` — the CLI's own door (a denial is audited and raised)."""
    # Imported here: the demo's steps stay importable without the command line's modules.
    from cdp.cli.access import cli_access

    return cli_access(
        runtime=get_runtime(),
        token=ctx.results["tokens"][role]["token"],
        purpose=purpose,
        resource=resource,
        action=action,
        subject_ids=subject_ids,
    )


STEPS: Final = [
    DemoStep("principals", "Create the demo principals, one per role it acts as", _principals)
]
