"""Rectification (GDPR art. 16): replace personal fields with corrected values.

Corrected values are encrypted under the subject's data key like any other; a corrected email or
phone also replaces the identity token of that kind, so the person is recognised by the new value
and no longer by the old one. A new value that already identifies another subject is refused
(:class:`ConflictError`): merging two people is ingestion's decision, not a correction's.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cdp.access.categories import PII_FIELDS
from cdp.crypto.normalize import IdentityKind
from cdp.db.models import Identity
from cdp.errors import ConflictError, InvalidInputError
from cdp.profiles.pii_records import read_one, write_sealed
from cdp.runtime import Runtime

IDENTITY_FIELDS = {"email": IdentityKind.EMAIL, "phone": IdentityKind.PHONE}


def _retoken(
    runtime: Runtime, conn: Connection, subject_id: str, kind: IdentityKind, raw: str, now: datetime
) -> None:
    ident = Identity.__table__  # type: ignore[attr-defined]
    token = runtime.tokenizer.token(kind, raw)
    owner = conn.execute(
        sa.select(ident.c.subject_id).where(
            ident.c.kind == kind.value, ident.c.token == token.value
        )
    ).scalar()
    if owner is not None and owner != subject_id:
        raise ConflictError(f"the corrected {kind.value} identifies another subject")
    if owner == subject_id:
        return
    conn.execute(
        sa.delete(ident).where(ident.c.subject_id == subject_id, ident.c.kind == kind.value)
    )
    conn.execute(
        sa.insert(ident).values(
            subject_id=subject_id,
            kind=kind.value,
            token=token.value,
            key_version=token.key_version,
            created_at=now,
        )
    )


def rectify(
    *,
    runtime: Runtime,
    conn: Connection,
    subject_id: str,
    corrections: Mapping[str, str],
    now: datetime,
) -> list[str]:
    """Re-encrypt ``corrections`` (field -> new value) of the subject; return the fields changed."""
    unknown = sorted(set(corrections) - PII_FIELDS)
    if unknown:
        raise InvalidInputError(
            "not personal data fields: " + ", ".join(unknown), field="corrections"
        )
    sealed = read_one(conn, subject_id, lock=True)
    for field, value in sorted(corrections.items()):
        if field in IDENTITY_FIELDS:
            _retoken(runtime, conn, subject_id, IDENTITY_FIELDS[field], value, now)
    record = {**sealed, **runtime.vault.encrypt_fields(subject_id, dict(corrections))}
    write_sealed(conn, {subject_id: record}, existing={subject_id} if sealed else (), now=now)
    return sorted(corrections)
