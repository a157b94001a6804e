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
    by_subject: dict[str, list[tuple[str, bytes]]] = {}
    for sid, field, blob in rows:
        items = by_subject.get(sid)
        if items is None:
            items = by_subject[sid] = []
        items.append((field, blob))
    out: dict[str, dict[str, str]] = {}
    for sid, items in by_subject.items():
        try:
            decrypt = vault.cipher(sid).decrypt
            out[sid] = {field: decrypt(field, blob) for field, blob in items}
        except DecryptionError:  # key shredded meanwhile, or a value that does not authenticate
            log.error("export skipped a subject whose data does not decrypt", subject_id=sid)
    return out
