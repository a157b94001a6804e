"""Audit records of operator actions: commands that run with installation access.

``cdp keys``, ``cdp principals`` and ``cdp sources`` run with direct access to the installation
(its databases and key file), like ``cdp init``: there is no principal to authenticate, since
whoever holds the key file and the databases can do anything these commands do. What they did is
still written down, in the same hash chain as every read: one record per action, under the
principal id ``system:operator`` (no principal can take a name with ``:``), naming the host as
the client, so that a key rotation, destroyed data keys, a new ``dpo`` token or a revoked write
key show up in the principal activity report and in ``cdp audit verify``'s chain like everything
else.

The records name what was acted on without personal data: :func:`credential_fields` describes a
principal or a source by its id and roles (``principal:<id>``, ``role:dpo``), never a token.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from sqlalchemy import Connection

from cdp.access.context import AccessContext
from cdp.audit.service import record_access
from cdp.audit.writer import SUBJECT_ID
from cdp.runtime import Runtime

T = TypeVar("T")

OPERATOR_ID = "system:operator"
SYSTEM_ROLES = ("system",)
"""The roles of cdp's own records (an operator's installation-access command, retention): no
policy role, and a purpose fixed by cdp, not chosen by a principal."""
SUBJECTS_PER_RECORD = 1000
"""Subject ids named by one record when an action touches many (as retention does)."""


def operator(client: str) -> AccessContext:
    """The context the audit log names for an installation-access command run on ``client``."""
    return AccessContext(
        principal_id=OPERATOR_ID,
        principal_name=OPERATOR_ID,  # no principal can take it (names hold no ":")
        roles=SYSTEM_ROLES,
        purpose="operations",
        request_id=uuid.uuid4().hex,
        client=client,
    )


def credential_fields(kind: str, ident: str, roles: Iterable[str] = ()) -> tuple[str, ...]:
    """What a record says about the credential it acted on: ``<kind>:<id>`` and its roles."""
    return (f"{kind}:{ident}", *(f"role:{r}" for r in roles))


def change_recorder(
    runtime: Runtime,
    ctx: AccessContext,
    *,
    action: str,
    resource: str,
    fields: Callable[[T], Sequence[str]],
) -> Callable[[Connection, T], None]:
    """The ``audit`` callback of a service that changes a credential or where data goes (a
    principal, a source's write key, a destination): ``action`` on ``resource`` by ``ctx``,
    naming ``fields(changed)``, written in the transaction that makes the change, so a change
    the log cannot record is not made."""

    def record(conn: Connection, changed: T) -> None:
        record_access(
            runtime=runtime,
            ctx=ctx,
            action=action,
            resource=resource,
            outcome="allowed",
            fields=tuple(fields(changed)),
            conn=conn,
        )

    return record


def record_operator_action(
    *,
    runtime: Runtime,
    action: str,
    resource: str,
    client: str,
    fields: Sequence[str] = (),
    subject_ids: Sequence[str] = (),
    conn: Connection | None = None,
) -> None:
    """Record ``action`` on ``resource`` (committed before this returns, or with ``conn``'s
    transaction when given: the change and its record commit together); with ``subject_ids``,
    one record per :data:`SUBJECTS_PER_RECORD` of them. Ids that are not subject ids (a privacy
    request's own key) are left out of the records: the log names subjects only."""
    ctx = operator(client)
    named = [s for s in subject_ids if SUBJECT_ID.match(s)]
    batches = [
        named[i : i + SUBJECTS_PER_RECORD] for i in range(0, len(named), SUBJECTS_PER_RECORD)
    ]
    for batch in batches or [[]]:
        record_access(
            runtime=runtime,
            ctx=ctx,
            action=action,
            resource=resource,
            outcome="allowed",
            subject_ids=batch,
            fields=fields,
            conn=conn,
        )


def record_key_operation(
    *, runtime: Runtime, action: str, client: str, subject_ids: Sequence[str] = ()
) -> None:
    """A ``cdp keys`` action (resource ``keys``)."""
    record_operator_action(
        runtime=runtime, action=action, resource="keys", client=client, subject_ids=subject_ids
    )
