"""Rectification (GDPR art. 16): replace personal fields with corrected values.

Corrected values pass the rules a customer record passes at ingestion (an email must be one, a
phone number is stored in E.164, a birthday is a date of 1900-2099, lengths are bounded), checked
when the request is filed, so a bad correction is refused then and never fails the request's run;
they are encrypted under the subject's data key like any other. A corrected email or phone also
replaces the identity token of the value it corrects, so the person is recognised by the new value
and no longer by the old one; the person's other identities of that kind (an account's email
merged in) stay theirs, and the old value's token is kept aside so that a later record carrying it
is refused (``rectified``) instead of re-linked or made a new person with default consent. A new
value that already identifies another subject is refused (:class:`ConflictError`): merging two
people is ingestion's decision, not a correction's. So is a new value that identified an erased
person (a tombstone): ingestion refuses it as ``erased``, and a correction must not hand it to a
live customer either. Both are checked under every pseudonym-key version, and a refusal changes
nothing.

Every destination that holds the person and a corrected field is told: the next export sends it
the corrected value and withdraws a replaced email or phone (:mod:`cdp.exports.rectified`); the
request's outcome lists the destinations that received a corrected field (art. 19).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from cdp.access.categories import PII_FIELDS
from cdp.crypto.normalize import IdentityKind
from cdp.db.models import Identity, RectifiedIdentity, Tombstone
from cdp.errors import ConflictError, InvalidInputError, NormalizationError
from cdp.exports.rectified import note_rectification
from cdp.ingest.customer_record import CustomerRecord
from cdp.profiles.pii_records import read_one, write_sealed
from cdp.runtime import Runtime
from cdp.validation import safe_location

IDENTITY_FIELDS = {"email": IdentityKind.EMAIL, "phone": IdentityKind.PHONE}
_PLACEHOLDER_ID = "rectification"
"""A customer id for validating corrections as a record (a record needs an identity)."""


def checked_corrections(
    corrections: Mapping[str, object], *, default_region: str
) -> dict[str, str]:
    """``corrections`` as ingestion would store them (email normalised, phone in E.164, a
    birthday as its ISO date), or :class:`InvalidInputError` naming the fields and rules that
    fail (never the values). A national phone number is read in the corrected ``country`` if
    one is given, else in ``default_region``."""
    unknown = sorted(set(corrections) - PII_FIELDS)
    if unknown:
        raise InvalidInputError(  # the unknown names are the caller's: counted, not echoed
            f"corrections name {len(unknown)} field(s) that are not personal data fields; "
            "corrections may name: " + ", ".join(sorted(PII_FIELDS)),
            field="corrections",
        )
    for name, value in sorted(corrections.items()):
        if not isinstance(value, str) or not value.strip():
            raise InvalidInputError(
                f"the correction of {name} must be a non-empty text", field="corrections"
            )
    try:
        record = CustomerRecord.model_validate(
            {"customer_id": _PLACEHOLDER_ID, **corrections},
            context={"default_region": default_region},
        )
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        rules = "; ".join(f"{safe_location(e['loc'], e['type'])}: {e['msg']}" for e in errors)
        raise InvalidInputError(
            "a correction breaks a rule: " + rules, field="corrections"
        ) from None
    values = record.pii()
    return {name: values[name] for name in corrections}


def _tokens(runtime: Runtime, kind: IdentityKind, raw: str) -> list[str]:
    """The tokens of ``raw`` under every pseudonym-key version (none if it is not an identity)."""
    try:
        return [t.value for t in runtime.tokenizer.lookup_tokens(kind, raw)]
    except NormalizationError:
        return []


def _retoken(
    runtime: Runtime,
    conn: Connection,
    subject_id: str,
    kind: IdentityKind,
    corrected: tuple[str | None, str],
    now: datetime,
) -> None:
    """Make the new value of ``corrected`` (old, new) an identity of the subject in place of the
    old one, the stored value the correction declares wrong (None: none stored).

    Only the old value's tokens leave the subject: its other identities of the kind (the email of
    an account merged into it, say) are not corrected and still identify it. The old value's token
    is kept in ``rectified_identities``, so a later record carrying it is refused (``rectified``)
    rather than given back to the person or made a new one with default consent; the new value,
    declared right, is taken out of there."""
    ident = Identity.__table__  # type: ignore[attr-defined]
    tombs = Tombstone.__table__  # type: ignore[attr-defined]
    retired = RectifiedIdentity.__table__  # type: ignore[attr-defined]
    old, new = corrected
    every = _tokens(runtime, kind, new)
    erased = conn.execute(
        sa.select(sa.literal(1)).where(tombs.c.kind == kind.value, tombs.c.token.in_(every))
    ).first()
    if erased is not None:
        raise ConflictError(
            f"the corrected {kind.value} belonged to an erased person; it is not given to another"
        )
    owners = set(
        conn.execute(
            sa.select(ident.c.subject_id).where(
                ident.c.kind == kind.value, ident.c.token.in_(every)
            )
        ).scalars()
    )
    if owners - {subject_id}:
        raise ConflictError(f"the corrected {kind.value} identifies another subject")
    wrong = [] if old is None else _tokens(runtime, kind, old)
    if old is not None and wrong and not set(wrong) & set(every):
        conn.execute(
            sa.delete(ident).where(
                ident.c.subject_id == subject_id,
                ident.c.kind == kind.value,
                ident.c.token.in_(wrong),
            )
        )
        held = conn.execute(
            sa.select(sa.literal(1)).where(ident.c.kind == kind.value, ident.c.token.in_(wrong))
        ).first()
        if held is None:  # the old value identifies nobody now (never another: that would merge)
            token = runtime.tokenizer.token(kind, old)
            row = {"kind": kind.value, "token": token.value, "key_version": token.key_version}
            insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
            conn.execute(
                insert(retired)
                .values(**row, rectified_at=now)
                .on_conflict_do_nothing(index_elements=["kind", "token"])
            )
    conn.execute(sa.delete(retired).where(retired.c.kind == kind.value, retired.c.token.in_(every)))
    if owners:
        return
    token = runtime.tokenizer.token(kind, new)
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
    """Re-encrypt ``corrections`` (field -> new value) of the subject; return the fields changed.

    The destinations holding a corrected field are told in the same transaction
    (:func:`cdp.exports.rectified.note_rectification`): they receive the new value on their next
    export, and the replaced email or phone is withdrawn there by a remove.

    The corrections are checked again (:func:`checked_corrections`), for a request filed before
    they were checked when filed."""
    corrections = checked_corrections(corrections, default_region=runtime.settings.default_region)
    sealed = read_one(conn, subject_id, lock=True)
    replaced: dict[str, str | None] = dict.fromkeys(corrections)
    for field, value in sorted(corrections.items()):
        if field in IDENTITY_FIELDS:
            blob = sealed.get(field)
            old = None if blob is None else runtime.vault.decrypt(subject_id, field, blob)
            _retoken(runtime, conn, subject_id, IDENTITY_FIELDS[field], (old, value), now)
            replaced[field] = None if old == value else old  # the same value: nothing to withdraw
    record = {**sealed, **runtime.vault.encrypt_fields(subject_id, dict(corrections))}
    write_sealed(conn, {subject_id: record}, existing={subject_id} if sealed else (), now=now)
    note_rectification(conn, runtime=runtime, subject_id=subject_id, replaced=replaced, now=now)
    return sorted(corrections)
