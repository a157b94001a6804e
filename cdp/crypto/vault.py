"""The PII vault: encrypt and decrypt a subject's fields under its own data key.

Unwrapped data keys are kept in a bounded LRU cache (with a time limit, so that a key shredded by
another process stops being usable here soon after) as ready ``AESGCM`` objects.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cdp.crypto.cipher import SubjectCipher
from cdp.crypto.keystore import DataKey, KeyStore
from cdp.errors import KeyShreddedError


class _DekCache:
    def __init__(self, size: int, ttl_seconds: float) -> None:
        self.size = size
        self.ttl = ttl_seconds
        self._items: OrderedDict[str, tuple[float, SubjectCipher]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, subject_id: str) -> SubjectCipher | None:
        # Lock-free read (hot path): OrderedDict's C operations are atomic under the GIL; an
        # entry evicted between the lookup and move_to_end is simply not refreshed.
        item = self._items.get(subject_id)
        if item is None:
            return None
        if time.monotonic() - item[0] > self.ttl:
            self._items.pop(subject_id, None)
            return None
        with contextlib.suppress(KeyError):
            self._items.move_to_end(subject_id)
        return item[1]

    def put(self, key: DataKey) -> SubjectCipher:
        entry = SubjectCipher(AESGCM(key.key), subject_id=key.subject_id, key_version=key.version)
        if self.size == 0:
            return entry
        with self._lock:
            self._items[key.subject_id] = (time.monotonic(), entry)
            self._items.move_to_end(key.subject_id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return entry

    def missing(self, subject_ids: Iterable[str]) -> list[str]:
        """The ids without a live cache entry (one lock for the whole batch)."""
        now = time.monotonic()
        with self._lock:
            items = self._items
            return [s for s in subject_ids if (e := items.get(s)) is None or now - e[0] > self.ttl]

    def put_many(self, keys: Iterable[DataKey]) -> None:
        entries = [
            (
                k.subject_id,
                SubjectCipher(AESGCM(k.key), subject_id=k.subject_id, key_version=k.version),
            )
            for k in keys
        ]
        if self.size == 0:
            return
        now = time.monotonic()
        with self._lock:
            for subject_id, cipher in entries:
                self._items[subject_id] = (now, cipher)
                self._items.move_to_end(subject_id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def split(self, subject_ids: Iterable[str]) -> tuple[dict[str, SubjectCipher], list[str]]:
        """The live cached ciphers among ``subject_ids``, and the ids without one (a lock-free
        read, like :meth:`get`; the hits are not refreshed)."""
        now, ttl, items = time.monotonic(), self.ttl, self._items
        found: dict[str, SubjectCipher] = {}
        missing: list[str] = []
        for s in subject_ids:
            e = items.get(s)
            if e is None or now - e[0] > ttl:
                missing.append(s)
            else:
                found[s] = e[1]
        return found, missing

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
        self._cache.put_many(self.keystore.create(subject_ids))

    def warm(self, subject_ids: Iterable[str]) -> None:
        """Load the data keys of many subjects at once (bulk reads and exports)."""
        missing = self._cache.missing(subject_ids)
        if missing:
            self._cache.put_many(self.keystore.load(missing).values())

    def bulk_keys(
        self, subject_ids: Iterable[str], *, dense: bool = False
    ) -> dict[str, tuple[int, AESGCM]]:
        """Ready data keys for many subjects at once (bulk reads: exports), as
        ``{subject_id: (key version, AES-GCM)}``. Cached keys are used; the others are unwrapped
        from one key-store read and *not* cached, so a pass over a million subjects neither
        evicts the keys interactive paths keep warm nor pays for cache upkeep (nor for a cipher
        object a subject). Shredded or unknown subjects are left out. ``dense``: see
        :meth:`KeyStore.unwrapped` (read as one range of ids)."""
        found, missing = self._cache.split(subject_ids)
        out = {s: (c.version, c.aead) for s, c in found.items()}
        if missing:
            for subject_id, version, key in self.keystore.unwrapped(missing, dense=dense):
                out[subject_id] = (version, AESGCM(key))
        return out

    def cipher(self, subject_id: str) -> SubjectCipher:
        """The subject's ready cipher (raises KeyShreddedError when its key is gone)."""
        entry = self._cache.get(subject_id)
        if entry is None:
            entry = self._cache.put(self.keystore.get(subject_id))
        return entry

    def has_key(self, subject_id: str) -> bool:
        try:
            self.cipher(subject_id)
        except KeyShreddedError:
            return False
        return True

    def encrypt(self, subject_id: str, field: str, value: str) -> bytes:
        return self.cipher(subject_id).encrypt(field, value)

    def encrypt_fields(self, subject_id: str, values: Mapping[str, str]) -> dict[str, bytes]:
        return self.cipher(subject_id).encrypt_many(values)

    def decrypt(self, subject_id: str, field: str, blob: bytes) -> str:
        return self.cipher(subject_id).decrypt(field, blob)

    def decrypt_fields(self, subject_id: str, blobs: Mapping[str, bytes]) -> dict[str, str]:
        return self.cipher(subject_id).decrypt_many(blobs)

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
