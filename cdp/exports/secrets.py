"""Webhook signing secrets, stored wrapped under the key-encryption key (KEK).

Why here and this way: a signing secret is a credential (whoever holds it can forge batches that a
receiver trusts), so it must not sit in the data database in clear, where every backup and
replica would carry it. It is wrapped exactly like a data key, by the :class:`KeyProvider`
(AES-256-GCM under the current KEK version, bound to the destination id), so it needs no new key
material, follows the same custody (key file, ``CDP_MASTER_KEYS``, or a KMS provider later), and
a copy of the data database alone cannot reveal it. A secret wrapped under an older KEK version is
re-wrapped under the current one the next time it is used, so retiring old KEK versions after a
rotation keeps secrets readable once every destination has been used (or ``cdp destinations
rotate-secret`` has run).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

from cdp.crypto.keystore import KeyStore
from cdp.crypto.provider import KeyProvider, WrappedKey

SECRET_PREFIX = "whsec_"  # noqa: S105 (a label, not a secret)


def new_signing_secret() -> str:
    """A fresh signing secret: ``whsec_`` + 32 random bytes, URL-safe base64."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _context(destination_id: str) -> bytes:
    return b"cdp-webhook-secret|" + destination_id.encode()


@contextlib.contextmanager
def wrapped_secret(keystore: KeyStore, destination_id: str, secret: str) -> Iterator[WrappedKey]:
    """The secret wrapped under the current KEK, bound to its destination, checked and counted
    like a data key (:meth:`KeyStore.wrapping`): a version the key store has superseded or
    retired is refused (a process with stale key material fails instead of storing a secret
    that ``rewrap`` cannot read), and its wraps count towards the version's usage bound. Store
    it, and commit that, inside the ``with``."""
    with keystore.wrapping([(secret.encode(), _context(destination_id))]) as (version, blobs):
        yield WrappedKey(version, blobs[0])


def unwrap_secret(provider: KeyProvider, destination_id: str, wrapped: WrappedKey) -> str:
    """The secret in clear (raises ``DecryptionError`` if moved to another destination)."""
    return provider.unwrap(wrapped, context=_context(destination_id)).decode()
