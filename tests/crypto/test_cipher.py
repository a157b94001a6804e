"""Field ciphertexts: tampering, moving, relabelling all fail closed and leak nothing."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from cdp.crypto.cipher import HEADER_BYTES, NONCE_BYTES, decrypt_field, encrypt_field
from cdp.errors import DecryptionError
from cdp.logging import get_logger

KEY = AESGCM(os.urandom(32))
SECRET = "zhang.wei+vip@example.cn"
SUBJECT = "a" * 32


def _blob() -> bytes:
    return encrypt_field(KEY, SECRET, subject_id=SUBJECT, field="email", key_version=1)


def test_roundtrip() -> None:
    assert decrypt_field(KEY, _blob(), subject_id=SUBJECT, field="email") == SECRET


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_flipping_any_byte_is_refused(data: st.DataObject) -> None:
    blob = bytearray(_blob())
    index = data.draw(st.integers(min_value=0, max_value=len(blob) - 1))
    bit = data.draw(st.integers(min_value=0, max_value=7))
    blob[index] ^= 1 << bit
    with pytest.raises(DecryptionError) as err:
        decrypt_field(KEY, bytes(blob), subject_id=SUBJECT, field="email")
    assert SECRET not in str(err.value)


@pytest.mark.parametrize("region", ["nonce", "ciphertext", "tag"])
def test_each_region_is_authenticated(region: str) -> None:
    blob = bytearray(_blob())
    index = {
        "nonce": HEADER_BYTES - NONCE_BYTES,
        "ciphertext": HEADER_BYTES,
        "tag": len(blob) - 1,
    }[region]
    blob[index] ^= 0x01
    with pytest.raises(DecryptionError):
        decrypt_field(KEY, bytes(blob), subject_id=SUBJECT, field="email")


def test_moving_to_another_subject_or_field_is_refused() -> None:
    blob = _blob()
    with pytest.raises(DecryptionError):
        decrypt_field(KEY, blob, subject_id="b" * 32, field="email")
    with pytest.raises(DecryptionError):
        decrypt_field(KEY, blob, subject_id=SUBJECT, field="phone")


def test_relabelled_key_version_is_refused() -> None:
    blob = bytearray(_blob())
    blob[4] ^= 0x02  # key version lives in bytes 1..4
    with pytest.raises(DecryptionError):
        decrypt_field(KEY, bytes(blob), subject_id=SUBJECT, field="email")


def test_truncated_and_unknown_format_are_refused() -> None:
    with pytest.raises(DecryptionError):
        decrypt_field(KEY, _blob()[:20], subject_id=SUBJECT, field="email")
    with pytest.raises(DecryptionError):
        decrypt_field(KEY, b"\x09" + _blob()[1:], subject_id=SUBJECT, field="email")


def test_errors_and_logs_hold_no_plaintext_key_or_ciphertext() -> None:
    raw_key = os.urandom(32)
    aead = AESGCM(raw_key)
    blob = encrypt_field(aead, SECRET, subject_id=SUBJECT, field="email", key_version=1)
    log = get_logger("test")
    with capture_logs() as logs, pytest.raises(DecryptionError) as caught:
        try:
            decrypt_field(aead, blob[:-1] + b"\x00", subject_id=SUBJECT, field="email")
        except DecryptionError as exc:
            log.warning("decrypt failed", error=str(exc), exc_info=exc)
            raise
    exc = caught.value
    text = f"{exc!s} {exc!r} {exc.__cause__!r}"
    assert exc.__cause__ is None and exc.__suppress_context__
    dumped = text + repr(logs)
    for needle in (SECRET, raw_key.hex(), blob.hex(), repr(blob), repr(raw_key)):
        assert needle not in dumped


def test_100k_encryptions_under_one_key_never_repeat_a_nonce() -> None:
    nonces = {
        encrypt_field(KEY, "x", subject_id=SUBJECT, field="f", key_version=1)[
            HEADER_BYTES - NONCE_BYTES : HEADER_BYTES
        ]
        for _ in range(100_000)
    }
    assert len(nonces) == 100_000
