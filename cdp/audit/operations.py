"""Audit records of key operations.

``cdp keys`` runs with direct access to the installation (its databases and key file), like
``cdp init``: there is no principal to authenticate, since whoever holds the key file can do
anything the commands do. What it did is still written down, in the same hash chain as every
read: one record per operation, naming the operator's host as the client, so that a rotation,
a retirement or destroyed data keys show up in the principal activity report and in
``cdp audit verify``'s chain like everything else.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from cdp.access.context import AccessContext
from cdp.audit.service import record_access
from cdp.audit.writer import SUBJECT_ID
from cdp.runtime import Runtime

KEY_OPERATOR_ID = "system:keys"
SUBJECTS_PER_RECORD = 1000
"""Subject ids named by one record when an operation touches many (as retention does)."""


def key_operator(client: str) -> AccessContext:
    """The context the audit log names for ``cdp keys`` (``client``: where it ran)."""
    return AccessContext(
        principal_id=KEY_OPERATOR_ID,
        principal_name=KEY_OPERATOR_ID,  # no principal can take it (names hold no ":")
        roles=("system",),
        purpose="operations",
        request_id=uuid.uuid4().hex,
        client=client,
    )


def record_key_operation(
    *, runtime: Runtime, action: str, client: str, subject_ids: Sequence[str] = ()
) -> None:
    """Record ``action`` on ``keys`` (committed before this returns); with ``subject_ids``, one
    record per :data:`SUBJECTS_PER_RECORD` of them. Ids that are not subject ids (a privacy
    request's own key) are left out of the records: the log names subjects only."""
    ctx = key_operator(client)
    named = [s for s in subject_ids if SUBJECT_ID.match(s)]
    batches = [
        named[i : i + SUBJECTS_PER_RECORD] for i in range(0, len(named), SUBJECTS_PER_RECORD)
    ]
    for batch in batches or [[]]:
        record_access(
            runtime=runtime,
            ctx=ctx,
            action=action,
            resource="keys",
            outcome="allowed",
            subject_ids=batch,
        )
