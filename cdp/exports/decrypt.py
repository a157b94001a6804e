"""Bulk decryption of a chunk of subjects, only the fields asked for.

Per chunk: the data keys are loaded at once (``vault.warm``), the ciphertexts come from one
``IN`` query restricted to the wanted fields, and each value is decrypted with the subject's
ready cipher. A subject whose key is gone (erased while the export ran) or whose ciphertext does
not authenticate is left out and named (by id and field only) in the log; the export counts it
as having no usable data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import sqlalchemy as sa

from cdp.crypto.cipher import SubjectCipher
from cdp.db.models import PiiValue
from cdp.errors import DecryptionError
from cdp.logging import get_logger
from cdp.runtime import Runtime

PII = cast(sa.Table, PiiValue.__table__)  # type: ignore[attr-defined]
log = get_logger("cdp.exports")

_QUERY = sa.select(PII.c.subject_id, PII.c.field, PII.c.ciphertext).where(
    PII.c.subject_id.in_(sa.bindparam("ids", expanding=True)),
    PII.c.field.in_(sa.bindparam("fields", expanding=True)),
)


def decrypt_chunk(
    runtime: Runtime, subject_ids: Sequence[str], fields: Sequence[str]
) -> dict[str, dict[str, str]]:
    """``{subject_id: {field: value}}`` for the chunk's subjects that have any of ``fields``."""
    vault = runtime.vault
    vault.warm(subject_ids)
    with runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        rows = conn.execute(_QUERY, {"ids": list(subject_ids), "fields": list(fields)}).all()
    out: dict[str, dict[str, str]] = {}
    ciphers: dict[str, SubjectCipher | None] = {}
    bad: set[str] = set()
    for sid, field, blob in rows:
        if sid in ciphers:
            cipher = ciphers[sid]
        else:
            try:
                cipher = vault.cipher(sid)
            except DecryptionError:
                cipher = None
            ciphers[sid] = cipher
        if cipher is None or sid in bad:
            continue
        try:
            value = cipher.decrypt(field, bytes(blob))
        except DecryptionError:
            log.error("export skipped a value that does not decrypt", subject_id=sid, field=field)
            bad.add(sid)
            continue
        profile = out.get(sid)
        if profile is None:
            profile = out[sid] = {}
        profile[field] = value
    for sid in bad:
        out.pop(sid, None)
    return out
