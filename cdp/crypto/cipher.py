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

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cdp.errors import DecryptionError

FORMAT_VERSION = 1
NONCE_BYTES = 12
TAG_BYTES = 16
_HEADER = struct.Struct(">BI")
HEADER_BYTES = _HEADER.size + NONCE_BYTES


def associated_data(subject_id: str, field: str, key_version: int) -> bytes:
    """The AAD binding a field ciphertext to its place."""
    return b"cdp-field|%d|%s|%s|%d" % (
        FORMAT_VERSION,
        subject_id.encode(),
        field.encode(),
        key_version,
    )


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
