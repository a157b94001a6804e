"""A subject's sealed PII fields as one stored value (one ``pii_records`` row a subject).

Each field stays its own AES-256-GCM ciphertext (:mod:`cdp.crypto.cipher`: its own nonce, its
AAD binding subject, field and key version), so a reader still decrypts only the fields it may
show. The record only packs them together, which makes writing or reading a profile one row
instead of one row a field: the vault's rows, their index entries and their key checks were most
of the database work of ingesting a customer.

Layout (bytes)::

    record format (1) | entries, in field-number order
    entry = field number (1) | ciphertext length (4, big-endian) | ciphertext

Field numbers index :data:`VAULT_FIELDS`; a new field is appended, never inserted, so stored
records keep their meaning. The row's ``fields`` column holds :func:`mask` of the fields present,
so that SQL can ask "has this subject any of these fields" without reading the record.
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Iterable, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cdp.crypto.cipher import HEADER_BYTES, MIN_BLOB, aad_prefix, header_for
from cdp.errors import DecryptionError

RECORD_FORMAT = 1

VAULT_FIELDS: tuple[str, ...] = (
    "email",
    "phone",
    "first_name",
    "last_name",
    "birthday",
    "gender",
    "street",
    "city",
    "postal_code",
    "state",
    "country",
    "custom_traits",
)
"""Every field the vault stores, by field number (append only)."""

FIELD_NUMBER: dict[str, int] = {f: i for i, f in enumerate(VAULT_FIELDS)}
_ENTRY = struct.Struct(">BI")
_FORMAT = bytes([RECORD_FORMAT])
_MAX_CIPHERTEXT = 2**32 - 1


def mask(fields: Iterable[str]) -> int:
    """The bit set of ``fields`` (bit n = field number n); unknown names raise KeyError."""
    bits = 0
    for field in fields:
        bits |= 1 << FIELD_NUMBER[field]
    return bits


def pack(ciphertexts: Mapping[str, bytes]) -> bytes:
    """One record from ``{field: ciphertext}``; entries go in field-number order, so equal
    contents give equal bytes."""
    parts = [_FORMAT]
    for number, field in sorted((FIELD_NUMBER[f], f) for f in ciphertexts):
        blob = ciphertexts[field]
        if len(blob) > _MAX_CIPHERTEXT:
            raise ValueError(f"the ciphertext of field {field!r} is too long to store")
        parts.append(_ENTRY.pack(number, len(blob)))
        parts.append(blob)
    return b"".join(parts)


def unpack(record: bytes, wanted: Collection[str] | None = None) -> dict[str, bytes]:
    """``{field: ciphertext}`` of a record: all fields, or only those in ``wanted``.

    A record that does not parse (unknown format or field number, an entry running past the
    end) raises :class:`~cdp.errors.DecryptionError`; the message names no content."""
    if not record or record[0] != RECORD_FORMAT:
        raise DecryptionError("a sealed PII record has an unknown format")
    out: dict[str, bytes] = {}
    names, entry, size = VAULT_FIELDS, _ENTRY.unpack_from, len(record)
    pos = 1
    try:
        while pos < size:
            number, length = entry(record, pos)
            start = pos + 5
            pos = start + length
            name = names[number]
            if wanted is None or name in wanted:
                out[name] = record[start:pos]
    except (struct.error, IndexError):
        raise DecryptionError("a sealed PII record is malformed") from None
    if pos != size:
        raise DecryptionError("a sealed PII record is truncated")
    return out


def fields_of(bits: int) -> list[str]:
    """The field names in a :func:`mask`."""
    return [f for i, f in enumerate(VAULT_FIELDS) if bits >> i & 1]


BulkKeys = Mapping[str, tuple[int, AESGCM]]
"""Subjects' ready data keys for bulk reads: ``{subject_id: (key version, AES-GCM)}``."""


class _UnreadableError(Exception):
    """A record or value that does not parse or authenticate (bulk path, never escapes)."""


def decrypt_records(
    keys: BulkKeys, records: Iterable[tuple[str, bytes]], wanted: Collection[str]
) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Decrypt the ``wanted`` fields of many subjects' records in one pass (bulk reads:
    exports): ``({subject_id: {field: value}}, failed ids)``.

    Each value gets the checks of :meth:`~cdp.crypto.cipher.SubjectCipher.decrypt_many` (the
    ciphertext's header names the subject's key version; the AAD binds subject, key version and
    field). Other fields are skipped unread, and the walk stops after the last wanted field
    (entries are in field-number order). A subject without a key in ``keys`` (shredded or
    unknown), or whose record does not parse or whose wanted value does not authenticate, is
    left out entirely and listed once in the failed ids; a subject with none of the wanted
    fields is simply absent."""
    names = {FIELD_NUMBER[f]: (f, f.encode()) for f in wanted if f in FIELD_NUMBER}
    last = max(names, default=-1)
    # by field number (a byte): the wanted field's name and its encoded name, else None
    table = tuple(names.get(number) for number in range(256))
    entry = _ENTRY.unpack_from
    out: dict[str, dict[str, str]] = {}
    failed: list[str] = []
    # per key version: the ciphertext header and the AAD's ends around the subject id
    # (``aad_prefix`` is ``start + subject id + end``), built once instead of once a subject
    parts: dict[int, tuple[bytes, bytes, bytes]] = {}
    get = keys.get
    head_end, body_at, shortest = 5, HEADER_BYTES, MIN_BLOB
    for sid, sealed in records:
        key = get(sid)
        if key is None:
            failed.append(sid)
            continue
        version, aead = key
        known = parts.get(version)
        if known is None:
            around = aad_prefix("\x00", version).split(b"\x00")
            known = parts[version] = (header_for(version), around[0], around[1])
        header, start_, end_ = known
        prefix = start_ + sid.encode() + end_
        decrypt = aead.decrypt
        values: dict[str, str] = {}
        try:
            if not sealed or sealed[0] != RECORD_FORMAT:
                raise _UnreadableError
            pos, size = 1, len(sealed)
            while pos < size:
                number, length = entry(sealed, pos)
                start = pos + 5
                pos = start + length
                named = table[number]
                if named is None:
                    continue
                nonce = start + head_end
                body = start + body_at
                if pos > size or length < shortest or sealed[start:nonce] != header:
                    raise _UnreadableError
                values[named[0]] = decrypt(
                    sealed[nonce:body], sealed[body:pos], prefix + named[1]
                ).decode()
                if number == last:
                    break
            else:
                if pos != size:
                    raise _UnreadableError
        except (_UnreadableError, InvalidTag, UnicodeDecodeError, struct.error):
            failed.append(sid)
            continue
        if values:
            out[sid] = values
    return out, failed
