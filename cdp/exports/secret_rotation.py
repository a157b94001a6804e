"""Webhook signing secrets across a key-encryption-key rotation.

A signing secret is wrapped under a KEK version like a data key (:mod:`cdp.exports.secrets`),
but it lives in the data database, beside its destination, not in the key store. So the key
store's ``rewrap`` does not move it and ``retire`` does not count it: without this module a
webhook not used since a rotation kept its secret under the old version, and retiring that
version made the secret unreadable for good (every delivery then failed until
``cdp destinations rotate-secret``). ``cdp keys rewrap`` calls :func:`rewrap_secrets` after the
data keys, and ``cdp keys retire`` refuses while :func:`secrets_per_version` counts one under the
version.
"""

from __future__ import annotations

import sqlalchemy as sa

from cdp.crypto.provider import WrappedKey
from cdp.exports.destinations import DESTINATIONS, write_secret
from cdp.exports.secrets import unwrap_secret
from cdp.runtime import Runtime


def secrets_per_version(runtime: Runtime) -> dict[int, int]:
    """How many webhook signing secrets each KEK version wraps."""
    with runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        rows = conn.execute(
            sa.select(DESTINATIONS.c.secret_kek_version, sa.func.count())
            .where(DESTINATIONS.c.secret_kek_version.is_not(None))
            .group_by(DESTINATIONS.c.secret_kek_version)
        ).all()
    return {int(v): int(n) for v, n in rows}


def rewrap_secrets(runtime: Runtime) -> int:
    """Re-wrap every signing secret not under the current KEK version; return how many.

    Each secret is re-wrapped in the transaction that reads it, and only if it is still the
    value read (a concurrent ``rotate-secret`` wins), so a run can be repeated at any time."""
    runtime.provider.reload()
    target = runtime.provider.current_version()
    done = 0
    with runtime.data_engine.begin() as conn:
        rows = conn.execute(
            sa.select(
                DESTINATIONS.c.id, DESTINATIONS.c.secret_ct, DESTINATIONS.c.secret_kek_version
            )
            .where(
                DESTINATIONS.c.secret_ct.is_not(None),
                DESTINATIONS.c.secret_kek_version != target,
            )
            .order_by(DESTINATIONS.c.id)
        ).all()
        for dest_id, blob, version in rows:
            secret = unwrap_secret(runtime.provider, dest_id, WrappedKey(int(version), bytes(blob)))
            done += write_secret(conn, runtime.provider, dest_id, secret, replacing=bytes(blob))
    return done
