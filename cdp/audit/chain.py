"""The audit record, its canonical encoding and the chain hash.

Canonical encoding (version 1), the bytes each hash covers: the compact JSON array (no spaces,
UTF-8, ``ensure_ascii`` off) of the record fields in this fixed order::

    [1, seq, at, principal_id, principal_name, roles, action, resource,
     subject_ids, fields, purpose, outcome, request_id, client]

``at`` is ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC, always six fraction digits); ``roles`` is the
comma-separated role list; ``subject_ids`` and ``fields`` are the compact JSON text of their lists,
exactly as stored. Then::

    hash = SHA-256(bytes.fromhex(prev_hash) || canonical)      (hex, lower case)

and the first record's ``prev_hash`` is 64 zeros. A fixed array needs no key sorting, so an
external verifier reproduces it in a few lines and ``cdp audit verify`` hashes >200k records/s.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

ENCODING_VERSION: Final = 1
GENESIS_HASH: Final = "0" * 64
OUTCOMES: Final = ("allowed", "denied", "error")

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def format_at(at: datetime) -> str:
    """The canonical text of a record time (UTC, microseconds, ``Z``)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def list_text(values: tuple[str, ...] | list[str]) -> str:
    """The stored (and hashed) text of a list field: compact JSON."""
    return _dumps(list(values))


def canonical(
    seq: int,
    at: str,
    principal_id: str,
    principal_name: str,
    roles: str,
    action: str,
    resource: str,
    subject_ids: str,
    fields: str,
    purpose: str,
    outcome: str,
    request_id: str,
    client: str,
) -> bytes:
    """The canonical bytes of one record (arguments in stored form; see the module doc)."""
    return _dumps(
        [
            ENCODING_VERSION,
            seq,
            at,
            principal_id,
            principal_name,
            roles,
            action,
            resource,
            subject_ids,
            fields,
            purpose,
            outcome,
            request_id,
            client,
        ]
    ).encode("utf-8")


def chain_hash(prev_hash: str, canonical_bytes: bytes) -> str:
    """SHA-256 over the previous hash (32 raw bytes) and the canonical bytes, hex."""
    h = hashlib.sha256(bytes.fromhex(prev_hash))
    h.update(canonical_bytes)
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One written audit record, as stored and hashed."""

    seq: int
    at: datetime
    principal_id: str
    principal_name: str
    roles: tuple[str, ...]
    action: str
    resource: str
    subject_ids: tuple[str, ...]
    fields: tuple[str, ...]
    purpose: str
    outcome: str
    request_id: str
    client: str
    prev_hash: str
    hash: str

    def canonical(self) -> bytes:
        """This record's canonical bytes."""
        return canonical(
            self.seq,
            format_at(self.at),
            self.principal_id,
            self.principal_name,
            ",".join(self.roles),
            self.action,
            self.resource,
            list_text(self.subject_ids),
            list_text(self.fields),
            self.purpose,
            self.outcome,
            self.request_id,
            self.client,
        )

    def to_json(self) -> dict[str, Any]:
        """The record as ``audit/record.schema.json`` describes it."""
        return {
            "seq": self.seq,
            "at": format_at(self.at),
            "principal_id": self.principal_id,
            "principal_name": self.principal_name,
            "roles": list(self.roles),
            "action": self.action,
            "resource": self.resource,
            "subject_ids": list(self.subject_ids),
            "fields": list(self.fields),
            "purpose": self.purpose,
            "outcome": self.outcome,
            "request_id": self.request_id,
            "client": self.client,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }
