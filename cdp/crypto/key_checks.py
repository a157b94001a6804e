"""Key-check values: does this key file hold the keys the key store's data was made with?

For each KEK version and each pseudonym-key version the key store records a key-check value,
HMAC-SHA256 of a fixed label under the key, truncated to 128 bits (it reveals nothing of the key),
when the version is created (``cdp keys rotate`` reserves the number with it before the key file
is written) or first seen by a process (installations from
before migration k0004, and ``cdp init``). Every process compares its key file with the record at
start, and ``/readyz`` does too; a mismatch is a ``key_error`` naming the ring and version, never
a silent start. What this catches: a key file restored from an older backup (it lacks the versions
the data is now wrapped under, and rotating it would mint a second, different "version 4"), and a
key file from another installation (same version numbers, other keys: old profiles would not
decrypt and every person would get a new pseudonym).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Final

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from cdp.clock import utcnow
from cdp.crypto.keyfile import KeyMaterial
from cdp.crypto.keystore_tables import data_keys, kek_usage, key_checks
from cdp.crypto.provider import LocalKeyProvider, kek_opens
from cdp.errors import KeyMaterialError

RINGS: Final = ("kek", "pseudonym")
_LABEL: Final = b"cdp-key-check-v1"

SecretsInUse = Callable[[int], bool]
"""Whether any webhook signing secret (in the data database) is wrapped under a KEK version."""


def check_value(key: bytes, ring: str, version: int) -> str:
    """The key-check value of ``key`` as ``ring`` version ``version`` (32 hex digits)."""
    message = b"%s|%s|%d" % (_LABEL, ring.encode(), version)
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


def _recorded(conn: Connection) -> dict[tuple[str, int], str]:
    c = key_checks.c
    rows = conn.execute(sa.select(c.ring, c.version, c.check_value))
    return {(str(r), int(v)): str(c) for r, v, c in rows}


def known_kek_versions(conn: Connection) -> set[int]:
    """Every KEK version the key store knows: checked, counted or marked."""
    checked = conn.execute(sa.select(key_checks.c.version).where(key_checks.c.ring == "kek"))
    counted = conn.execute(sa.select(kek_usage.c.kek_version))
    return {int(v) for (v,) in checked} | {int(v) for (v,) in counted}


def _problems(
    conn: Connection, material: KeyMaterial, secrets_in_use: SecretsInUse | None
) -> tuple[list[str], dict[tuple[str, int], str]]:
    """What is wrong, and the live versions of the file the store has no record of yet."""
    recorded = _recorded(conn)
    problems: list[str] = []
    missing: dict[tuple[str, int], str] = {}
    proven = False  # a KEK version of the file matches its record or opens a stored data key
    for ring in RINGS:
        live = material.live_keys(ring)
        for version, key in sorted(live.items()):
            value = check_value(key, ring, version)
            known = recorded.get((ring, version))
            if known is None:
                missing[(ring, version)] = value
                if ring == "kek":
                    opens = _opens_a_data_key(conn, key, version)
                    if opens is False:
                        problems.append(
                            f"kek version {version} of the key file does not open the data keys "
                            "the key store holds under that version"
                        )
                    proven = proven or opens is True
            elif not hmac.compare_digest(known, value):
                problems.append(
                    f"{ring} version {version} of the key file is not the key the key store "
                    "recorded for that version"
                )
            elif ring == "kek":
                proven = True
        listed = set(material.versions(ring))
        known_versions = {v for (r, v) in recorded if r == ring}
        if ring == "kek":
            known_versions |= known_kek_versions(conn)
        for version in sorted(known_versions - listed):
            if ring == "pseudonym":
                problems.append(
                    f"the key store knows pseudonym version {version}, which the key file lacks"
                )
            elif _kek_in_use(conn, version, secrets_in_use):
                problems.append(
                    f"data is wrapped under KEK version {version}, which the key file lacks"
                )
    if missing and not proven and not problems and _holds_data_keys(conn):
        # Nothing recorded or opened proves the file: recording its values now would lock the
        # right key file out once it is restored.
        problems.append(
            "no KEK version of the key file opens a data key the key store holds, so its "
            "key-check values cannot be recorded"
        )
    return problems, missing


def _opens_a_data_key(conn: Connection, key: bytes, version: int) -> bool | None:
    """Whether ``key`` unwraps a data key stored under KEK ``version`` (``None``: none is)."""
    row = conn.execute(
        sa.select(data_keys.c.subject_id, data_keys.c.wrapped)
        .where(data_keys.c.kek_version == version)
        .limit(1)
    ).first()
    if row is None:
        return None
    return kek_opens(key, version, str(row[0]), bytes(row[1]))


def _holds_data_keys(conn: Connection) -> bool:
    found = conn.execute(sa.select(sa.literal(1)).select_from(data_keys).limit(1)).first()
    return found is not None


def _kek_in_use(conn: Connection, version: int, secrets_in_use: SecretsInUse | None) -> bool:
    found = conn.execute(
        sa.select(sa.literal(1)).where(data_keys.c.kek_version == version).limit(1)
    ).first()
    return found is not None or (secrets_in_use is not None and secrets_in_use(version))


def mismatches(
    key_engine: Engine, material: KeyMaterial, *, secrets_in_use: SecretsInUse | None = None
) -> list[str]:
    """Every way ``material`` disagrees with the key store's record (read only)."""
    with key_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        return _problems(conn, material, secrets_in_use)[0]


def verify_and_record(
    key_engine: Engine, material: KeyMaterial, *, secrets_in_use: SecretsInUse | None = None
) -> None:
    """Raise ``KeyMaterialError`` if ``material`` disagrees with the key store; otherwise
    record the values of its versions the key store has none of yet.

    The values are inserted (a version recorded meanwhile by another process is kept) and then
    read back and compared in the same transaction: a process never takes up a version whose
    recorded value is another key file's, however its check interleaves with a rotation's
    reservation (:func:`reserve_kek_version`) or another process's check."""
    with key_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        problems, missing = _problems(conn, material, secrets_in_use)
    if problems:
        raise mismatch_error(problems)
    if not missing:
        return
    with key_engine.begin() as conn:  # rolled back on a mismatch: nothing of this file is kept
        record(conn, missing)
        recorded = _recorded(conn)
        lost = [
            f"{ring} version {version} of the key file is not the key the key store recorded "
            "for that version"
            for (ring, version), value in sorted(missing.items())
            if not hmac.compare_digest(recorded[(ring, version)], value)
        ]
        if lost:
            raise mismatch_error(lost)


def record(conn: Connection, values: dict[tuple[str, int], str]) -> None:
    """Store key-check values (a version recorded meanwhile by another process is kept)."""
    ins = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(key_checks)
    now = utcnow()
    for (ring, version), value in sorted(values.items()):
        conn.execute(
            ins.values(
                ring=ring, version=version, check_value=value, recorded_at=now
            ).on_conflict_do_nothing()
        )


def mismatch_error(problems: list[str]) -> KeyMaterialError:
    return KeyMaterialError(
        "the key file does not belong to this key store: "
        + "; ".join(problems)
        + ". Restore the key file that goes with this key store (the newest backup); see "
        "'Lost key file or key store' in docs/operations.md"
    )


def reserve_kek_version(key_engine: Engine, version: int, value: str) -> None:
    """Reserve KEK ``version`` for the key whose check value is ``value``, before a rotation
    writes it into the key file: one insert, in one key-store transaction, that only one key can
    win. Raise ``KeyMaterialError`` if the key store already knows the version with another key
    (another copy of the key file was rotated to it) or as used (this key file is older than
    the key store). The same value recorded already is this key's own reservation, by a
    rotation interrupted before it saved the key file: it stands."""
    c = key_checks.c
    try:
        with key_engine.begin() as conn:
            known = conn.execute(
                sa.select(c.check_value).where(c.ring == "kek", c.version == version)
            ).scalar_one_or_none()
            if known is not None:
                if hmac.compare_digest(str(known), value):
                    return
                raise _minted_elsewhere(version)
            if version in known_kek_versions(conn):
                raise KeyMaterialError(
                    f"the key store already knows KEK version {version}, which this key file "
                    "lacks: it is older than the key store. Restore the newest key file instead "
                    "of rotating; nothing was changed"
                )
            conn.execute(
                sa.insert(key_checks).values(
                    ring="kek", version=version, check_value=value, recorded_at=utcnow()
                )
            )
    except IntegrityError:  # another rotation reserved it between the read and the insert
        raise _minted_elsewhere(version) from None


def _minted_elsewhere(version: int) -> KeyMaterialError:
    return KeyMaterialError(
        f"the key store already knows KEK version {version}, made by a rotation of another copy "
        "of the key file (another host's, or a newer backup): this one is out of date. Copy the "
        f"key file of the host that rotated (`cdp keys status` there lists version {version}) to "
        "this host instead of rotating here. If no host's key file has that version, a rotation "
        "was interrupted: run `cdp keys rotate` again on the host where it ran, which finishes it. "
        "Nothing was changed"
    )


def rotate_kek(key_engine: Engine, provider: LocalKeyProvider) -> int:
    """Add a KEK version and make it current, as ``cdp keys rotate`` does: its number is
    reserved in the key store (:func:`reserve_kek_version`) before the key file is written, so
    two hosts rotating copies of one key file cannot both make a version of that number."""
    return provider.rotate(
        reserve=lambda version, key: reserve_kek_version(
            key_engine, version, check_value(key, "kek", version)
        )
    )


def secrets_in_use_for(data_engine: Engine) -> SecretsInUse:
    """Whether a webhook signing secret in the data database is wrapped under a KEK version (a
    lookup in a small table, asked only for versions the key file lacks)."""

    def in_use(version: int) -> bool:
        with data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
            found = conn.execute(
                sa.text("SELECT 1 FROM export_destinations WHERE secret_kek_version = :v LIMIT 1"),
                {"v": version},
            ).first()
        return found is not None

    return in_use


def forget_key_records(key_engine: Engine) -> None:
    """Drop the key-check values and usage counts of earlier key material: only for a key store
    that holds no data key, when ``cdp init`` has just created a new key file."""
    with key_engine.begin() as conn:
        if _holds_data_keys(conn):
            raise KeyMaterialError("the key store holds data keys; its key records are kept")
        conn.execute(sa.delete(key_checks))
        conn.execute(sa.delete(kek_usage))
