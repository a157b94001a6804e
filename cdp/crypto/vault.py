"""The PII vault: encrypt and decrypt a subject's fields under its own data key.

Unwrapped data keys are kept in a bounded LRU cache (with a time limit, so that a key shredded by
another process stops being usable here soon after) as ready ``AESGCM`` objects.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cdp.crypto.cipher import decrypt_field, encrypt_field, key_version_of
from cdp.crypto.keystore import DataKey, KeyStore
from cdp.errors import DecryptionError, KeyShreddedError


class _DekCache:
    def __init__(self, size: int, ttl_seconds: float) -> None:
        self.size = size
        self.ttl = ttl_seconds
        self._items: OrderedDict[str, tuple[float, int, AESGCM]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, subject_id: str) -> tuple[int, AESGCM] | None:
        with self._lock:
            item = self._items.get(subject_id)
            if item is None:
                return None
            if time.monotonic() - item[0] > self.ttl:
                del self._items[subject_id]
                return None
            self._items.move_to_end(subject_id)
            return item[1], item[2]

    def put(self, key: DataKey) -> tuple[int, AESGCM]:
        entry = (key.version, AESGCM(key.key))
        if self.size == 0:
            return entry
        with self._lock:
            self._items[key.subject_id] = (time.monotonic(), *entry)
            self._items.move_to_end(key.subject_id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return entry

    def drop(self, subject_ids: Iterable[str]) -> None:
        with self._lock:
            for s in subject_ids:
                self._items.pop(s, None)

    def __len__(self) -> int:
        return len(self._items)


class Vault:
    """Field encryption under per-subject data keys."""

    def __init__(
        self, keystore: KeyStore, *, cache_size: int = 10_000, cache_ttl_seconds: float = 300.0
    ) -> None:
        self.keystore = keystore
        self._cache = _DekCache(cache_size, cache_ttl_seconds)

    def __repr__(self) -> str:
        return f"Vault(cached_keys={len(self._cache)})"

    def create_keys(self, subject_ids: Sequence[str]) -> None:
        """Create (and cache) data keys for new subjects, in one key-store transaction."""
        for key in self.keystore.create(subject_ids):
            self._cache.put(key)

    def warm(self, subject_ids: Iterable[str]) -> None:
        """Load the data keys of many subjects at once (bulk reads and exports)."""
        missing = [s for s in subject_ids if self._cache.get(s) is None]
        for key in self.keystore.load(missing).values():
            self._cache.put(key)

    def _key(self, subject_id: str) -> tuple[int, AESGCM]:
        entry = self._cache.get(subject_id)
        if entry is None:
            entry = self._cache.put(self.keystore.get(subject_id))
        return entry

    def has_key(self, subject_id: str) -> bool:
        try:
            self._key(subject_id)
        except KeyShreddedError:
            return False
        return True

    def encrypt(self, subject_id: str, field: str, value: str) -> bytes:
        version, aead = self._key(subject_id)
        return encrypt_field(aead, value, subject_id=subject_id, field=field, key_version=version)

    def encrypt_fields(self, subject_id: str, values: Mapping[str, str]) -> dict[str, bytes]:
        version, aead = self._key(subject_id)
        return {
            f: encrypt_field(aead, v, subject_id=subject_id, field=f, key_version=version)
            for f, v in values.items()
        }

    def decrypt(self, subject_id: str, field: str, blob: bytes) -> str:
        version, aead = self._key(subject_id)
        if key_version_of(blob) != version:
            raise DecryptionError(
                f"field {field!r} of subject {subject_id} has another key version"
            )
        return decrypt_field(aead, blob, subject_id=subject_id, field=field)

    def decrypt_fields(self, subject_id: str, blobs: Mapping[str, bytes]) -> dict[str, str]:
        return {f: self.decrypt(subject_id, f, b) for f, b in blobs.items()}

    def shred(self, subject_ids: Sequence[str]) -> int:
        """Crypto-shred: destroy the data keys; the subjects' ciphertexts become unreadable."""
        self._cache.drop(subject_ids)
        return self.keystore.shred(subject_ids)

    def forget_cached(self, subject_ids: Iterable[str] | None = None) -> None:
        """Drop cached keys (all of them when ``subject_ids`` is None)."""
        if subject_ids is None:
            self._cache = _DekCache(self._cache.size, self._cache.ttl)
        else:
            self._cache.drop(subject_ids)
