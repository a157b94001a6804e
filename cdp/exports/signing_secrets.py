"""Which secrets sign a webhook's batches: the current one and, for an overlap window after a
rotation, the one it replaced; and the rotation itself.

``rotate-secret`` keeps the secret it replaces (wrapped as it was: same destination, same KEK
binding) with the end of its overlap window, :data:`DEFAULT_OVERLAP` (24 h) unless told otherwise
(0 for a secret that leaked, at most :data:`MAX_OVERLAP`). Until then every batch carries two
signatures, ``t=…,v1=<new>,v1=<old>``, so the receiver can switch to the new secret at any
moment of the window and keep accepting every batch; a second rotation keeps only the secret
it replaces.

:class:`SigningSecrets` is what a running export signs with: it reads the destination's secrets
again before every try (one read by primary key; a secret is unwrapped only when its stored
ciphertext changed), so batches and retries posted after a rotation are signed with the new
secret, and the old one signs nothing once its window is over (its ciphertext is then cleared).
Before, an export read the secret once at its start and signed every later batch with it alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import sqlalchemy as sa
from sqlalchemy import Connection

from cdp.clock import Clock, utcnow
from cdp.crypto.provider import WrappedKey
from cdp.errors import (
    ConflictError,
    DecryptionError,
    InvalidInputError,
    KeyMaterialError,
    NotFoundError,
)
from cdp.exports.destinations import (
    DESTINATIONS,
    DestinationInfo,
    DestinationKind,
    get_destination,
    write_secret,
)
from cdp.exports.secrets import new_signing_secret, unwrap_secret, wrapped_secret
from cdp.logging import get_logger
from cdp.runtime import Runtime

log = get_logger("cdp.exports")

DEFAULT_OVERLAP: Final = timedelta(hours=24)
"""How long the replaced secret keeps signing beside the new one, by default: a day, time for
whoever runs the receiver to install the new secret, without keeping an old one in use for long."""
MAX_OVERLAP: Final = timedelta(days=7)

_COLUMNS: Final = (
    DESTINATIONS.c.secret_ct,
    DESTINATIONS.c.secret_kek_version,
    DESTINATIONS.c.previous_secret_ct,
    DESTINATIONS.c.previous_secret_kek_version,
    DESTINATIONS.c.previous_secret_until,
)


@dataclass(frozen=True, slots=True)
class RotatedSecret:
    """A new signing secret (shown once) and until when the old one still signs (None: not)."""

    secret: str
    previous_until: datetime | None

    def __repr__(self) -> str:
        return f"RotatedSecret(secret=<hidden>, previous_until={self.previous_until!r})"


def rotate_secret(
    *,
    runtime: Runtime,
    name: str,
    overlap: timedelta = DEFAULT_OVERLAP,
    clock: Clock = utcnow,
    audit: Callable[[Connection, str], object] | None = None,
) -> RotatedSecret:
    """Give a webhook destination a new signing secret; the one it replaces signs beside it for
    ``overlap`` (0: not at all). ``audit`` is called with the transaction and the destination's
    id before it commits (the rotation and its record together, or neither). Raises
    ``InvalidInputError`` (``overlap`` out of 0-7 days), ``ConflictError`` (not a webhook),
    ``NotFoundError``."""
    if not timedelta(0) <= overlap <= MAX_OVERLAP:
        raise InvalidInputError("the overlap must be from 0 to 7 days", field="overlap")
    dest = get_destination(runtime=runtime, name=name)
    if dest.kind != DestinationKind.WEBHOOK:
        raise ConflictError("only webhook destinations have a signing secret")
    secret = new_signing_secret()
    now = clock()
    until = now + overlap if overlap > timedelta(0) else None
    with runtime.data_engine.connect() as conn:
        txn = conn.begin()  # SQLite: BEGIN IMMEDIATE; PostgreSQL: the row is locked below
        old_ct, old_version = conn.execute(
            sa.select(DESTINATIONS.c.secret_ct, DESTINATIONS.c.secret_kek_version)
            .where(DESTINATIONS.c.id == dest.id)
            .with_for_update()
        ).one()
        keep = until is not None and old_ct is not None
        with wrapped_secret(runtime.keystore, dest.id, secret) as wrapped:
            conn.execute(
                sa.update(DESTINATIONS)
                .where(DESTINATIONS.c.id == dest.id)
                .values(
                    secret_ct=wrapped.blob,
                    secret_kek_version=wrapped.kek_version,
                    previous_secret_ct=old_ct if keep else None,
                    previous_secret_kek_version=old_version if keep else None,
                    previous_secret_until=until if keep else None,
                    updated_at=now,
                )
            )
            if audit is not None:
                audit(conn, dest.id)
            txn.commit()  # before the key store's: `retire` then sees the secret
    return RotatedSecret(secret, until if keep else None)


def forget_previous(runtime: Runtime, destination_id: str, blob: bytes) -> int:
    """Clear the replaced secret ``blob`` (its window is over, or it cannot be read), unless
    a rotation replaced it meanwhile; return whether it was cleared (0 or 1)."""
    with runtime.data_engine.begin() as conn:
        done = conn.execute(
            sa.update(DESTINATIONS)
            .where(
                DESTINATIONS.c.id == destination_id,
                DESTINATIONS.c.previous_secret_ct == blob,
            )
            .values(
                previous_secret_ct=None,
                previous_secret_kek_version=None,
                previous_secret_until=None,
            )
        )
    return int(done.rowcount or 0)


def signing_secret(*, runtime: Runtime, destination: DestinationInfo) -> str:
    """The webhook's current signing secret in clear, for signing only (re-wrapped under the
    current KEK if it was wrapped under an older one: :class:`SigningSecrets`)."""
    return SigningSecrets(runtime=runtime, destination=destination, clock=utcnow)()[0]


class SigningSecrets:
    """The secrets the next try of a webhook batch is signed with, newest first: read afresh on
    every call (see the module doc). The current secret is re-wrapped under the current KEK when
    it was wrapped under an older one (only if it is still the one read: a rotation in between
    is never overwritten); a replaced secret that cannot be read any more is dropped with a
    warning (the current one still signs). ``clock`` tells when the overlap window is over."""

    def __init__(self, *, runtime: Runtime, destination: DestinationInfo, clock: Clock) -> None:
        self._runtime = runtime
        self._dest = destination
        self._clock = clock
        self._clear: dict[bytes, str] = {}

    def __repr__(self) -> str:
        return f"SigningSecrets(destination={self._dest.id}, secrets=<hidden>)"

    def _unwrap(self, blob: bytes, version: int) -> str:
        secret = self._clear.get(blob)
        if secret is None:
            secret = unwrap_secret(self._runtime.provider, self._dest.id, WrappedKey(version, blob))
            if len(self._clear) >= 4:  # only the latest secrets are ever asked for again
                self._clear.clear()
            self._clear[blob] = secret
        return secret

    def __call__(self) -> tuple[str, ...]:
        runtime, dest_id = self._runtime, self._dest.id
        with runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
            row = conn.execute(sa.select(*_COLUMNS).where(DESTINATIONS.c.id == dest_id)).first()
        if row is None or row[0] is None or row[1] is None:
            raise NotFoundError(f"destination {self._dest.name!r} has no signing secret")
        ct, version, prev_ct, prev_version, until = row
        current = self._unwrap(bytes(ct), int(version))
        if int(version) != runtime.provider.current_version():
            write_secret(runtime, dest_id, current, replacing=bytes(ct))
        if prev_ct is None or prev_version is None:
            return (current,)
        if until is None or until <= self._clock():
            forget_previous(runtime, dest_id, bytes(prev_ct))  # its window is over
            return (current,)
        try:
            previous = self._unwrap(bytes(prev_ct), int(prev_version))
        except (DecryptionError, KeyMaterialError) as exc:
            log.warning(
                "replaced webhook secret not readable; signing with the current one only",
                destination=self._dest.name,
                kek_version=int(prev_version),
                error_type=type(exc).__name__,
            )
            forget_previous(runtime, dest_id, bytes(prev_ct))
            return (current,)
        return (current, previous)
