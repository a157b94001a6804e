"""The CLI's door into access control: every command that reads personal data authenticates a
principal (``--token`` or ``CDP_TOKEN``) and names a purpose (``--purpose``), exactly like an API
request, and is decided by the same policy and recorded in the same audit log.

Use in a command::

    @app.command("show")
    def show(subject_id: str, token: TokenOption = None, purpose: PurposeOption = None) -> None:
        rt = get_runtime()
        ctx = cli_access(runtime=rt, token=token, purpose=purpose,
                         resource="profile", action="read", subject_ids=[subject_id])
        ...  # then cdp.audit.service.audited_read(runtime=rt, ctx=ctx, ...)
"""

from __future__ import annotations

import socket
import string
import uuid
from collections.abc import Iterable
from typing import Annotated, Final

import typer
from sqlalchemy import Connection

from cdp.access.context import AccessContext, check_purpose
from cdp.access.engine import get_policy_engine
from cdp.access.principals import authenticate
from cdp.audit.operations import record_operator_action
from cdp.audit.service import deny
from cdp.runtime import Runtime

TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="CDP_TOKEN",
        help="Your principal's bearer token (or set CDP_TOKEN).",
        show_default=False,
    ),
]
PurposeOption = Annotated[
    str | None,
    typer.Option("--purpose", help="Purpose of use, e.g. support or privacy_request."),
]


_HOST_CHARACTERS: Final = frozenset(string.ascii_letters + string.digits + ".-")


def cli_client(hostname: str | None = None) -> str:
    """The ``client`` recorded for CLI reads: ``cli:<host name>`` (of this machine unless
    given; its ASCII letters, digits, ``.`` and ``-``: the audit refuses anything else, such as a
    non-ASCII letter)."""
    name = socket.gethostname() if hostname is None else hostname
    host = "".join(c for c in name if c in _HOST_CHARACTERS)[:100]
    return f"cli:{host or 'unknown'}"


def record_cli_operation(
    runtime: Runtime,
    *,
    action: str,
    resource: str,
    fields: tuple[str, ...] = (),
    conn: Connection | None = None,
) -> None:
    """Audit an installation-access command (``cdp keys``, ``principals``, ``sources``) under
    ``system:operator``, naming this host as the client (:mod:`cdp.audit.operations`); with
    ``conn``, in that transaction."""
    record_operator_action(
        runtime=runtime,
        action=action,
        resource=resource,
        client=cli_client(),
        fields=fields,
        conn=conn,
    )


def cli_access(
    *,
    runtime: Runtime,
    token: str | None,
    purpose: str | None,
    resource: str,
    action: str,
    subject_ids: Iterable[str] = (),
) -> AccessContext:
    """Authenticate ``token``, check ``purpose`` and decide ``action`` on ``resource``.

    Raises ``AuthenticationError``, ``InvalidInputError`` (missing or unknown purpose) or, after
    writing a ``denied`` audit record, ``PermissionDeniedError``; the CLI prints them as one line.
    """
    principal = authenticate(runtime=runtime, token=token)
    checked = check_purpose(purpose, source="--purpose")
    decision = get_policy_engine().decide(principal.roles, resource, action, checked)
    ctx = AccessContext(
        principal_id=principal.id,
        principal_name=principal.name,
        roles=principal.roles,
        purpose=checked,
        request_id=uuid.uuid4().hex,
        client=cli_client(),
        decision=decision,
    )
    if not decision.allowed:
        raise deny(
            runtime=runtime, ctx=ctx, action=action, resource=resource, subject_ids=subject_ids
        )
    return ctx
