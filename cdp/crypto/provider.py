"""Key-encryption key providers.

A :class:`KeyProvider` wraps and unwraps data keys under versioned key-encryption keys (KEK). The
local provider keeps the KEKs in the key file; a remote KMS or Vault transit provider implements
the same four operations over the network (it is slow, so data keys are cached after unwrapping
and never used per field remotely).
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cdp.clock import utcnow
from cdp.crypto.keyfile import KeyFile, KeyMaterial, KeyVersion, PendingVersion
from cdp.errors import DecryptionError, KeyMaterialError
from cdp.logging import get_logger

log = get_logger("cdp.keys")

KEY_FILE_RECHECK_SECONDS = 1.0
"""How often, at most, a process looks at the key file (one ``stat``) when it asks for the
current version, i.e. before wrapping: a rotation by another process is picked up within this
long, without a restart. Safety does not rest on it: the key store refuses, inside the wrapping
transaction, a version that is superseded or retired there (:meth:`KeyStore.create
<cdp.crypto.keystore.KeyStore.create>` then reloads the key material and wraps again)."""


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A data key wrapped under one KEK version."""

    kek_version: int
    blob: bytes = field(repr=False)


class KeyProvider(ABC):
    """What cdp needs of whoever holds the key-encryption keys."""

    name: str

    @property
    def read_only(self) -> bool:
        """Whether the key material is managed outside cdp (``rotate``/``retire`` cannot change
        it)."""
        return False

    def reload(self) -> None:  # noqa: B027 (a provider without local material has nothing to do)
        """Read the key material again (another process rotated or retired a version)."""

    @abstractmethod
    def current_version(self) -> int:
        """The KEK version new data keys are wrapped under."""

    @abstractmethod
    def versions(self) -> list[KeyVersion]:
        """Every KEK version known, retired ones included."""

    @abstractmethod
    def wrap(self, dek: bytes, *, context: bytes) -> WrappedKey:
        """Wrap ``dek`` under the current version, bound to ``context`` (the subject id)."""

    def wrap_many(self, items: Sequence[tuple[bytes, bytes]]) -> tuple[int, list[bytes]]:
        """Wrap many keys under one version, the current one: ``(dek, context)`` in, the
        version and the wrapped blobs out (in order)."""
        wrapped = [self.wrap(dek, context=context) for dek, context in items]
        versions = {w.kek_version for w in wrapped}
        if len(versions) > 1:
            raise KeyMaterialError("the current key-encryption key changed while wrapping; retry")
        return (versions.pop() if versions else self.current_version()), [w.blob for w in wrapped]

    @abstractmethod
    def unwrap(self, wrapped: WrappedKey, *, context: bytes) -> bytes:
        """Unwrap a data key; raise DecryptionError if it does not authenticate."""

    def unwrap_many(
        self, rows: Iterable[tuple[str, int, int, bytes]]
    ) -> list[tuple[str, int, bytes]]:
        """Unwrap many data keys: ``(subject_id, dek_version, kek_version, wrapped)`` in,
        ``(subject_id, dek_version, dek)`` out, each bound to its subject id as context;
        raise DecryptionError if any does not authenticate."""
        unwrap = self.unwrap
        return [
            (s, dek_version, unwrap(WrappedKey(kek, bytes(blob)), context=s.encode()))
            for s, dek_version, kek, blob in rows
        ]

    @abstractmethod
    def rotate(self, *, reserve: Callable[[int, bytes], None] | None = None) -> int:
        """Add a new KEK version and make it current; return it. ``reserve(version, key)`` is
        called before the key material is written, and may refuse the new version (raise
        :class:`KeyMaterialError`): nothing is written then."""

    @abstractmethod
    def retire(self, version: int) -> None:
        """Destroy a KEK version (the caller checks that no data key still uses it)."""


def _wrap_aad(context: bytes, version: int) -> bytes:
    return b"cdp-dek|%s|%d" % (context, version)


def kek_opens(key: bytes, version: int, subject_id: str, wrapped: bytes) -> bool:
    """Whether ``key``, as KEK ``version``, unwraps ``subject_id``'s wrapped data key (the
    key-check values' proof that a key file is this key store's, :mod:`cdp.crypto.key_checks`)."""
    try:
        AESGCM(key).decrypt(wrapped[:12], wrapped[12:], _wrap_aad(subject_id.encode(), version))
    except InvalidTag:
        return False
    return True


class LocalKeyProvider(KeyProvider):
    """KEKs from the local key file, AES-256-GCM key wrapping."""

    name = "local"

    def __init__(self, key_file: KeyFile) -> None:
        self._file = key_file
        self._guard: Callable[[KeyMaterial], None] | None = None
        self._stamp: tuple[int, int, int] | None = None
        self.reload()

    def guard_reloads(self, check: Callable[[KeyMaterial], None]) -> None:
        """Have every later :meth:`reload` pass the key file's new contents to ``check`` before
        using them. ``check`` raises :class:`KeyMaterialError` for material that does not belong
        to this installation (the key store's key-check values: a key file swapped under the
        running process, e.g. restored from an older backup or taken from another host); the
        material loaded before then stays in use — it is the one the key store agreed with —
        and the refusal is logged once per change of the file. Any other error ``check`` raises
        (the key store unreachable) propagates: nothing is taken up, and the next look at the
        file tries again."""
        self._guard = check

    def __repr__(self) -> str:
        return f"LocalKeyProvider(current={self._material.current('kek')})"

    @property
    def material(self) -> KeyMaterial:
        return self._material

    @property
    def read_only(self) -> bool:
        return self._file.read_only

    def reload(self) -> None:
        stamp = self._file.stamp()  # taken first: a rewrite after the read below is seen next time
        if self._guard is not None and stamp is not None and stamp == self._stamp:
            return  # unchanged since it was taken up, or since it was refused: nothing to check
        material = self._file.load()
        if self._guard is not None:
            try:
                self._guard(material)
            except KeyMaterialError as exc:
                # not the hot path's problem: the material in use still matches the key store
                self._stamp = stamp  # checked again when the file next changes, not every second
                self._recheck_at = time.monotonic() + KEY_FILE_RECHECK_SECONDS
                log.error(
                    "the key file changed and does not belong to this key store; the key "
                    "material loaded before stays in use (restore the right key file)",
                    reason=str(exc),
                )
                return
        self._aeads = {v: AESGCM(k) for v, k in material.live_keys("kek").items()}
        self._material = material
        self._stamp = stamp
        self._recheck_at = time.monotonic() + KEY_FILE_RECHECK_SECONDS

    def _check_file(self) -> None:
        self._recheck_at = time.monotonic() + KEY_FILE_RECHECK_SECONDS
        stamp = self._file.stamp()
        if stamp is not None and stamp != self._stamp:  # a missing file is not a rotation
            self.reload()

    def current_version(self) -> int:
        """The current version of the key file as of at most ``KEY_FILE_RECHECK_SECONDS`` ago
        (a clock comparison on the hot path; a ``stat`` of the file once a second)."""
        if time.monotonic() >= self._recheck_at:
            self._check_file()
        return self._material.current("kek")

    def versions(self) -> list[KeyVersion]:
        return self._material.version_info("kek")

    def _aead(self, version: int) -> AESGCM:
        aead = self._aeads.get(version)
        if aead is None:
            self.reload()  # another process may have rotated
            aead = self._aeads.get(version)
        if aead is None:
            raise KeyMaterialError(f"key-encryption key version {version} is not available")
        return aead

    def wrap(self, dek: bytes, *, context: bytes) -> WrappedKey:
        version = self.current_version()
        nonce = os.urandom(12)
        blob = nonce + self._aead(version).encrypt(nonce, dek, _wrap_aad(context, version))
        return WrappedKey(version, blob)

    def wrap_many(self, items: Sequence[tuple[bytes, bytes]]) -> tuple[int, list[bytes]]:
        """As :meth:`KeyProvider.wrap_many`: the current version looked up once, the AAD built
        inline (ingestion creates thousands of keys a batch)."""
        version = self.current_version()
        aead = self._aead(version)
        end = _wrap_aad(b"", version)[len(b"cdp-dek|") :]
        urandom, encrypt = os.urandom, aead.encrypt
        blobs: list[bytes] = []
        append = blobs.append
        for dek, context in items:
            nonce = urandom(12)
            append(nonce + encrypt(nonce, dek, b"cdp-dek|" + context + end))
        return version, blobs

    def unwrap(self, wrapped: WrappedKey, *, context: bytes) -> bytes:
        aead = self._aead(wrapped.kek_version)
        try:
            return aead.decrypt(
                wrapped.blob[:12], wrapped.blob[12:], _wrap_aad(context, wrapped.kek_version)
            )
        except InvalidTag:
            raise DecryptionError("a wrapped data key failed authentication") from None

    def unwrap_many(
        self, rows: Iterable[tuple[str, int, int, bytes]]
    ) -> list[tuple[str, int, bytes]]:
        """As :meth:`KeyProvider.unwrap_many`, with the KEK's cipher and the AAD built inline
        (exports unwrap a million keys)."""
        out: list[tuple[str, int, bytes]] = []
        append = out.append
        # per KEK version: its cipher and the end of the AAD after the subject id
        # (``_wrap_aad`` is ``b"cdp-dek|" + context + end``)
        kek: dict[int, tuple[AESGCM, bytes]] = {}
        try:
            for subject_id, dek_version, kek_version, blob in rows:
                known = kek.get(kek_version)
                if known is None:
                    end = _wrap_aad(b"", kek_version)[len(b"cdp-dek|") :]
                    known = kek[kek_version] = (self._aead(kek_version), end)
                aead, end = known
                aad = b"cdp-dek|" + subject_id.encode() + end
                append((subject_id, dek_version, aead.decrypt(blob[:12], blob[12:], aad)))
        except InvalidTag:
            raise DecryptionError("a wrapped data key failed authentication") from None
        return out

    def rotate(self, *, reserve: Callable[[int, bytes], None] | None = None) -> int:
        """As :meth:`KeyProvider.rotate`. The new version is first kept beside the key file
        (:meth:`KeyFile.save_pending`), then reserved, then written into the key file: a rotation
        interrupted after the reservation is finished by the next one, with the same key. A
        refusal drops it; any other error (the key store unreachable: the reservation may have
        been made) keeps it for the next rotation."""
        with self._file.locked():
            material = self._file.load()
            new = material.next_version("kek")
            pending = self._file.load_pending()
            if pending is None or (pending.ring, pending.version) != ("kek", new):
                pending = PendingVersion.new("kek", new, utcnow())
                self._file.save_pending(pending)
            if reserve is not None:
                try:
                    reserve(new, pending.key)
                except KeyMaterialError:
                    self._file.drop_pending()
                    raise
            self._file.save(material.with_version(pending))
            self._file.drop_pending()
        self.reload()
        return new

    def retire(self, version: int) -> None:
        with self._file.locked():
            material = self._file.load().with_retired("kek", version, utcnow())
            self._file.save(material)
        self.reload()
