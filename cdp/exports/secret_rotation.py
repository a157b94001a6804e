"""Webhook signing secrets across a key-encryption-key rotation.

A signing secret is wrapped under a KEK version like a data key (:mod:`cdp.exports.secrets`),
but it lives in the data database, beside its destination, not in the key store. So the key
store's ``rewrap`` does not move it and ``retire`` does not count it: without this module a
webhook not used since a rotation kept its secret under the old version, and retiring that
version made the secret unreadable for good (every delivery then failed until
``cdp destinations rotate-secret``). ``cdp keys rewrap`` calls :func:`rewrap_secrets` after the
data keys, and ``cdp keys retire`` refuses while :func:`secrets_per_version` counts one under the
version. A secret ``rotate-secret`` replaced counts and is re-wrapped the same way while it still
signs (its overlap window, :mod:`cdp.exports.signing_secrets`); after that it is cleared.
"""

from __future__ import annotations

import sqlalchemy as sa

from cdp.clock import Clock, utcnow
from cdp.crypto.provider import WrappedKey
from cdp.errors import DecryptionError, KeyMaterialError
from cdp.exports.destinations import DESTINATIONS, write_secret
from cdp.exports.secrets import unwrap_secret, wrapped_secret
from cdp.exports.signing_secrets import forget_previous
from cdp.logging import get_logger
from cdp.runtime import Runtime

log = get_logger("cdp.exports.secret_rotation")


def secrets_per_version(runtime: Runtime, *, clock: Clock = utcnow) -> dict[int, int]:
    """How many webhook signing secrets each KEK version wraps: the current ones, and those a
    rotation replaced whose overlap window is not over (they still sign; an expired one is
    never read again)."""
    live = DESTINATIONS.c.previous_secret_until > clock()
    with runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        rows = conn.execute(
            sa.select(DESTINATIONS.c.secret_kek_version, sa.func.count())
            .where(DESTINATIONS.c.secret_kek_version.is_not(None))
            .group_by(DESTINATIONS.c.secret_kek_version)
        ).all()
        previous = conn.execute(
            sa.select(DESTINATIONS.c.previous_secret_kek_version, sa.func.count())
            .where(DESTINATIONS.c.previous_secret_kek_version.is_not(None), live)
            .group_by(DESTINATIONS.c.previous_secret_kek_version)
        ).all()
    counts: dict[int, int] = {}
    for v, n in (*rows, *previous):
        counts[int(v)] = counts.get(int(v), 0) + int(n)
    return counts


def rewrap_secrets(runtime: Runtime, *, clock: Clock = utcnow) -> int:
    """Re-wrap every signing secret not under the current KEK version; return how many.
    Secrets a rotation replaced are re-wrapped too while they still sign, and cleared once their
    overlap window is over or when they cannot be read (the current secret signs alone).

    Each secret is re-wrapped in its own transaction, and only if it is still the value read (a
    concurrent ``rotate-secret`` wins), so a run can be repeated at any time. A secret that
    cannot be read (wrapped under a version whose key is gone) does not stop the others: they
    are all re-wrapped first, then ``KeyMaterialError`` names, by name, each destination that
    needs ``cdp destinations rotate-secret``."""
    runtime.provider.reload()
    target = runtime.provider.current_version()
    with runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        rows = conn.execute(
            sa.select(
                DESTINATIONS.c.id,
                DESTINATIONS.c.name,
                DESTINATIONS.c.secret_ct,
                DESTINATIONS.c.secret_kek_version,
            )
            .where(
                DESTINATIONS.c.secret_ct.is_not(None),
                DESTINATIONS.c.secret_kek_version != target,
            )
            .order_by(DESTINATIONS.c.name)
        ).all()
    done = 0
    unreadable: list[str] = []
    for dest_id, name, blob, version in rows:
        try:
            secret = unwrap_secret(runtime.provider, dest_id, WrappedKey(int(version), bytes(blob)))
        except (DecryptionError, KeyMaterialError) as exc:
            log.warning(
                "webhook secret not readable", destination=name, kek_version=int(version),
                error_type=type(exc).__name__,
            )  # fmt: skip
            unreadable.append(f"{name!r} (KEK version {int(version)})")
            continue
        done += write_secret(runtime, dest_id, secret, replacing=bytes(blob))
    done += _rewrap_previous(runtime, target, clock)
    if unreadable:
        raise KeyMaterialError(
            f"re-wrapped {done} webhook signing secret(s); {len(unreadable)} cannot be read and "
            f"were left as they are: destinations {', '.join(unreadable)}. Run `cdp destinations "
            "rotate-secret NAME` for each (and give its receiver the new secret)"
        )
    return done


def _rewrap_previous(runtime: Runtime, target: int, clock: Clock) -> int:
    """Re-wrap the replaced secrets still in their window under ``target``; clear the others."""
    with runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        rows = conn.execute(
            sa.select(
                DESTINATIONS.c.id,
                DESTINATIONS.c.name,
                DESTINATIONS.c.previous_secret_ct,
                DESTINATIONS.c.previous_secret_kek_version,
                DESTINATIONS.c.previous_secret_until,
            ).where(
                DESTINATIONS.c.previous_secret_ct.is_not(None),
                sa.or_(
                    DESTINATIONS.c.previous_secret_kek_version != target,
                    DESTINATIONS.c.previous_secret_until <= clock(),
                    DESTINATIONS.c.previous_secret_until.is_(None),
                ),
            )
        ).all()
    done = 0
    now = clock()
    for dest_id, name, blob, version, until in rows:
        if until is None or until <= now:
            forget_previous(runtime, dest_id, bytes(blob))
            continue
        try:
            secret = unwrap_secret(runtime.provider, dest_id, WrappedKey(int(version), bytes(blob)))
        except (DecryptionError, KeyMaterialError) as exc:
            log.warning(
                "replaced webhook secret not readable; cleared", destination=name,
                kek_version=int(version), error_type=type(exc).__name__,
            )  # fmt: skip
            forget_previous(runtime, dest_id, bytes(blob))
            continue
        with runtime.data_engine.connect() as conn:
            txn = conn.begin()
            with wrapped_secret(runtime.keystore, dest_id, secret) as wrapped:
                changed = conn.execute(
                    sa.update(DESTINATIONS)
                    .where(
                        DESTINATIONS.c.id == dest_id,
                        DESTINATIONS.c.previous_secret_ct == bytes(blob),
                    )
                    .values(
                        previous_secret_ct=wrapped.blob,
                        previous_secret_kek_version=wrapped.kek_version,
                    )
                )
                txn.commit()  # before the key store's, as write_secret does
        done += int(changed.rowcount or 0)
    return done
