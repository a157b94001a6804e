"""Field encryption: AES-256-GCM with a self-describing ciphertext.

Layout (bytes)::

    format version (1) | key version (4, big-endian) | nonce (12) | ciphertext + tag (16)

The associated data binds the ciphertext to its subject, its field and its key version, so a value
moved to another subject or field, or relabelled with another version, fails to authenticate.
Every failure is a :class:`~cdp.errors.DecryptionError` that carries no plaintext, key or
ciphertext.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cdp.errors import DecryptionError

FORMAT_VERSION = 1
NONCE_BYTES = 12
TAG_BYTES = 16
_HEADER = struct.Struct(">BI")
HEADER_BYTES = _HEADER.size + NONCE_BYTES
MIN_BLOB = HEADER_BYTES + TAG_BYTES


#: Ciphertext headers by key version (a handful of versions exist).
_HEADERS: dict[int, bytes] = {}


def header_for(key_version: int) -> bytes:
    """The first bytes of every ciphertext under ``key_version`` (format and key version)."""
    header = _HEADERS.get(key_version)
    if header is None:
        header = _HEADER.pack(FORMAT_VERSION, key_version)
        if len(_HEADERS) < 256:
            _HEADERS[key_version] = header
    return header


def aad_prefix(subject_id: str, key_version: int) -> bytes:
    """The AAD of a subject's field ciphertexts up to the field name."""
    return b"cdp-field|%d|%s|%d|" % (FORMAT_VERSION, subject_id.encode(), key_version)


def associated_data(subject_id: str, field: str, key_version: int) -> bytes:
    """The AAD binding a field ciphertext to its place: format, subject, key version, field."""
    return aad_prefix(subject_id, key_version) + field.encode()


class SubjectCipher:
    """One subject's data key, ready to use: AAD prefix and header computed once (hot path)."""

    __slots__ = ("_aads", "_aead", "_header", "_prefix", "subject_id", "version")

    def __init__(self, aead: AESGCM, *, subject_id: str, key_version: int) -> None:
        self._aead = aead
        self.subject_id = subject_id
        self.version = key_version
        self._prefix = aad_prefix(subject_id, key_version)
        self._header = header_for(key_version)
        self._aads: dict[str, bytes] = {}

    @property
    def aead(self) -> AESGCM:
        """The subject's AES-GCM (bulk readers decrypt with it directly)."""
        return self._aead

    def _aad(self, field: str) -> bytes:
        aad = self._aads.get(field)
        if aad is None:
            aad = self._aads[field] = self._prefix + field.encode()
        return aad

    def __repr__(self) -> str:
        return f"SubjectCipher(subject_id={self.subject_id!r}, version={self.version})"

    def encrypt(self, field: str, plaintext: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return (
            self._header + nonce + self._aead.encrypt(nonce, plaintext.encode(), self._aad(field))
        )

    def encrypt_many(self, values: Mapping[str, str]) -> dict[str, bytes]:
        """Encrypt a record's fields: one ``urandom`` call for all nonces (each an independent,
        uniformly random 96 bits), AADs from the per-field cache."""
        randomness = os.urandom(NONCE_BYTES * len(values))
        header, encrypt, aads = self._header, self._aead.encrypt, self._aads
        out: dict[str, bytes] = {}
        for i, (field, plaintext) in enumerate(values.items()):
            nonce = randomness[i * NONCE_BYTES : (i + 1) * NONCE_BYTES]
            aad = aads.get(field) or self._aad(field)
            out[field] = header + nonce + encrypt(nonce, plaintext.encode(), aad)
        return out

    def decrypt_many(self, blobs: Mapping[str, bytes]) -> dict[str, str]:
        """Decrypt a record's fields (same checks as :meth:`decrypt`)."""
        header, decrypt, aads, prefix = self._header, self._aead.decrypt, self._aads, self._prefix
        out: dict[str, str] = {}
        for field, blob in blobs.items():
            if len(blob) < MIN_BLOB or blob[:5] != header:
                out[field] = self.decrypt(field, blob)  # raises the precise error
                continue
            aad = aads.get(field)
            if aad is None:
                aad = aads[field] = prefix + field.encode()
            try:
                out[field] = decrypt(blob[5:HEADER_BYTES], blob[HEADER_BYTES:], aad).decode()
            except InvalidTag:
                raise DecryptionError(
                    f"field {field!r} of subject {self.subject_id} failed authentication"
                ) from None
        return out

    def decrypt(self, field: str, blob: bytes) -> str:
        if len(blob) < HEADER_BYTES + TAG_BYTES or not blob.startswith(self._header):
            if len(blob) >= HEADER_BYTES + TAG_BYTES and blob[0] == FORMAT_VERSION:
                raise DecryptionError(
                    f"field {field!r} of subject {self.subject_id} has another key version"
                )
            key_version_of(blob)  # raises the precise error (truncated, unknown format)
        try:
            plain = self._aead.decrypt(blob[5:HEADER_BYTES], blob[HEADER_BYTES:], self._aad(field))
        except InvalidTag:
            raise DecryptionError(
                f"field {field!r} of subject {self.subject_id} failed authentication"
            ) from None
        return plain.decode()


def encrypt_field(
    aead: AESGCM, plaintext: str, *, subject_id: str, field: str, key_version: int
) -> bytes:
    """Encrypt one field value under a subject's data key."""
    nonce = os.urandom(NONCE_BYTES)
    body = aead.encrypt(nonce, plaintext.encode(), associated_data(subject_id, field, key_version))
    return _HEADER.pack(FORMAT_VERSION, key_version) + nonce + body


def key_version_of(blob: bytes) -> int:
    """The data-key version recorded in a ciphertext."""
    if len(blob) < HEADER_BYTES + TAG_BYTES:
        raise DecryptionError("ciphertext is truncated")
    fmt, version = _HEADER.unpack_from(blob)
    if fmt != FORMAT_VERSION:
        raise DecryptionError("unknown ciphertext format version")
    return int(version)


def decrypt_field(aead: AESGCM, blob: bytes, *, subject_id: str, field: str) -> str:
    """Authenticate and decrypt one field value; any mismatch raises DecryptionError."""
    version = key_version_of(blob)
    nonce = blob[_HEADER.size : HEADER_BYTES]
    try:
        plain = aead.decrypt(
            nonce, blob[HEADER_BYTES:], associated_data(subject_id, field, version)
        )
    except InvalidTag:
        raise DecryptionError(
            f"field {field!r} of subject {subject_id} failed authentication"
        ) from None
    return plain.decode()
