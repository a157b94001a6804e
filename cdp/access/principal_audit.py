"""The audit record of a principal's creation or revocation: which principal, with which roles
(the principals table is not chained, so the log must show who was given what), written in the
transaction that makes the change (a change the log cannot record is not made)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection

from cdp.access.context import AccessContext
from cdp.access.principals import PrincipalInfo
from cdp.audit.operations import change_recorder, credential_fields
from cdp.runtime import Runtime


def principal_recorder(
    runtime: Runtime, ctx: AccessContext, action: str
) -> Callable[[Connection, PrincipalInfo], None]:
    """The ``audit`` callback of ``principals.create`` / ``revoke`` for ``ctx`` (an admin over
    the API, ``system:operator`` on the command line): ``principal:<id>`` and its roles."""
    return change_recorder(
        runtime, ctx, action=action, resource="principals", fields=_principal_fields
    )


def _principal_fields(p: PrincipalInfo) -> tuple[str, ...]:
    return credential_fields("principal", p.id, p.roles)
