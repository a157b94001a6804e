"""Objection (GDPR art. 21): the person objects to direct marketing, so every marketing purpose
is withdrawn — through the consent ledger, like any other withdrawal, so the proof shows when and
why (mechanism ``request``, source ``privacy_request:<id>``).

Objection to legitimate-interest processing (``analytics``) needs the controller's balancing test
(art. 21(1)); once decided, the DPO records it as a plain withdrawal
(``cdp consent withdraw --purpose analytics``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Connection

from cdp.consent.purposes import MARKETING_PURPOSES, Mechanism
from cdp.consent.service import ConsentInput, record_consents


def object_to_marketing(
    *, conn: Connection, subject_id: str, request_id: str, actor: str, now: datetime
) -> list[str]:
    """Withdraw every marketing purpose for the subject; return the purposes withdrawn."""
    items = [
        ConsentInput(
            subject_id=subject_id,
            purpose=purpose,
            status="withdrawn",
            occurred_at=now,
            source=f"privacy_request:{request_id}"[:64],
            mechanism=Mechanism.REQUEST.value,
            recorded_by=actor[:64],
        )
        for purpose in MARKETING_PURPOSES
    ]
    record_consents(conn=conn, items=items, clock=lambda: now)
    return list(MARKETING_PURPOSES)
