"""Demo steps on one person's data: a support read that is allowed, an analyst's that is denied,
and a DPO's erasure request carried out to the end.

The customers come from the shop's ``customers.csv``, the way a support agent or a DPO would
meet them: by an email address. Each is found through the audited lookup
(:func:`cdp.profiles.reads.find_profiles`, which matches the email's token, asking only for the
subject id so nothing is decrypted), so a customer erased by an earlier run of the demo is simply
not found and the next row of the file is used. Nothing personal is printed: a customer is named
by its row in the file, fields by their names.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from cdp.crypto.normalize import IdentityKind
from cdp.demo.pipeline import DemoContext, DemoStep
from cdp.demo.steps_access import act_as
from cdp.errors import PermissionDeniedError
from cdp.privacy import request_filing, request_lifecycle, runner
from cdp.profiles.reads import find_profiles, get_profile
from cdp.runtime import get_runtime

CONTACT_FIELDS: Final = frozenset({"email", "phone"})
ID_ONLY: Final = frozenset({"subject_id"})
MAX_LOOKUPS: Final = 50
"""How many rows of the file to try before giving up (each try is one audited lookup)."""


def _emails(path: Path) -> Iterator[tuple[int, str]]:
    """(row number, email) of each customer in the file that has an email (row 1 = first)."""
    with path.open(newline="", encoding="utf-8") as fh:
        for row_number, row in enumerate(csv.DictReader(fh), start=1):
            email = (row.get("email") or "").strip()
            if email:
                yield row_number, email


def find_customer(
    ctx: DemoContext, role: str, purpose: str, *, skip: set[str]
) -> tuple[int, str, str] | None:
    """The first customer of the shop file that still exists and is not in ``skip``:
    (row number, email, subject id), found by ``role``'s audited email lookup."""
    rt = get_runtime()
    access = act_as(ctx, role, purpose=purpose, resource="profile", action="read")
    for tried, (row_number, email) in enumerate(_emails(ctx.results["shop"].customers), 1):
        views = find_profiles(
            runtime=rt, ctx=access, kind=IdentityKind.EMAIL, value=email, fields=ID_ONLY
        )
        found = [v.subject_id for v in views if v.subject_id not in skip]
        if found:
            return row_number, email, found[0]
        if tried >= MAX_LOOKUPS:
            break
    return None


def _reads(ctx: DemoContext) -> None:
    rt = get_runtime()
    found = find_customer(ctx, "support", "support", skip=set())
    if found is None:
        ctx.say("no customer of the shop file could be found; skipped")
        ctx.done["reads"] = "skipped (no customer found)"
        return
    row, _email, sid = found
    who = f"the customer in row {row} of customers.csv"
    support = act_as(
        ctx, "support", purpose="support", resource="profile", action="read", subject_ids=[sid]
    )
    view = get_profile(runtime=rt, ctx=support, subject_id=sid, fields=CONTACT_FIELDS)
    shown = sorted(set(view.shown()) & CONTACT_FIELDS)
    ctx.say(
        f"support (purpose support) read {', '.join(shown) or 'no contact field'} of {who}: "
        "allowed, recorded in the audit log (values not shown here)"
    )
    analyst = act_as(
        ctx, "analyst", purpose="analytics", resource="profile", action="read", subject_ids=[sid]
    )
    outcome = "allowed"
    try:
        get_profile(runtime=rt, ctx=analyst, subject_id=sid, fields=CONTACT_FIELDS)
    except PermissionDeniedError as exc:
        outcome = f"denied ({exc.code})"
    ctx.say(
        f"analyst (purpose analytics) asked for {', '.join(sorted(CONTACT_FIELDS))} of the same "
        f"customer: {outcome}, recorded in the audit log"
    )
    ctx.results["reads"] = {
        "row": row,
        "subject_id": sid,
        "support_fields": shown,
        "analyst": outcome,
    }
    ctx.done["reads"] = (
        f"support read {len(shown)} contact field(s) of row {row}: allowed; analyst: {outcome}"
    )


def _erasure(ctx: DemoContext) -> None:
    rt = get_runtime()
    read_sid = ctx.results.get("reads", {}).get("subject_id")
    found = find_customer(
        ctx, "dpo", "privacy_request", skip={read_sid} if read_sid is not None else set()
    )
    if found is None:
        ctx.say("no customer of the shop file could be found; skipped")
        ctx.done["erasure"] = "skipped (no customer found)"
        return
    row, email, sid = found
    purpose = "privacy_request"
    dpo = act_as(ctx, "dpo", purpose=purpose, resource="privacy_requests", action="create")
    filed = request_filing.create(
        runtime=rt,
        type="erasure",
        identity_kind=IdentityKind.EMAIL.value,
        identity_value=email,
        ctx=dpo,
    )
    ctx.say(f"erasure request {filed.id} filed for the customer in row {row} of customers.csv")
    dpo = act_as(ctx, "dpo", purpose=purpose, resource="privacy_requests", action="write")
    request_lifecycle.verify(
        runtime=rt, request_id=filed.id, actor=dpo.principal_name, note="identity verified (demo)"
    )
    dpo = act_as(ctx, "dpo", purpose=purpose, resource="privacy_requests", action="run")
    done = runner.run(runtime=rt, ctx=dpo, request_id=filed.id)
    outcome: dict[str, Any] = done.outcome or {}
    deleted = sum(int(v) for v in (outcome.get("deleted") or {}).values())
    notify = len(outcome.get("destinations_to_notify") or [])
    ctx.say(
        f"request {done.status}: data keys shredded {outcome.get('keys_shredded', 0)}, "
        f"rows deleted {deleted:,}, tombstones kept {outcome.get('tombstones', 0)}, "
        f"destinations to notify {notify}"
    )
    lookup = act_as(ctx, "dpo", purpose=purpose, resource="profile", action="read")
    after = find_profiles(
        runtime=rt, ctx=lookup, kind=IdentityKind.EMAIL, value=email, fields=ID_ONLY
    )
    ctx.say(f"lookup of the customer's email after the erasure: {len(after)} profile(s) found")
    ctx.results["erasure"] = {
        "row": row,
        "subject_id": sid,
        "request_id": done.id,
        "status": done.status,
        "outcome": outcome,
        "found_after": len(after),
    }
    ctx.done["erasure"] = (
        f"request {done.id} {done.status} (row {row}); keys shredded "
        f"{outcome.get('keys_shredded', 0)}, rows deleted {deleted:,}; "
        f"found by email afterwards: {len(after)}"
    )


STEPS: Final = [
    DemoStep("reads", "Read a profile as support (allowed) and as an analyst (denied)", _reads),
    DemoStep("erasure", "Erase a customer on request (as the DPO)", _erasure),
]
