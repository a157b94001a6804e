"""After an erasure on SQLite no file holds the subject's wrapped data key or ciphertexts: not
the database files, not their write-ahead logs. Scanned byte for byte, without checkpointing
first (the erasure must have done it).

The bug these guard against: the shred existed only in ``keys.db-wal`` while ``keys.db`` still
held the wrapped key, and ``cdp.db-wal`` kept older copies of the pages with the person's
ciphertexts; with ``master-keys.json`` the whole record could be decrypted again.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from structlog.testing import capture_logs

from cdp.crypto.keystore_tables import data_keys
from cdp.db.models import new_subject_id
from cdp.privacy.erasure import erase_subject, erase_subjects
from cdp.privacy.erasure_steps import clear_wals
from cdp.runtime import Runtime
from tests.conftest import CdpEnv
from tests.crash.helpers import CLI
from tests.factories import read_pii
from tests.privacy.seed import seed_person

FILES = ("keys.db", "keys.db-wal", "cdp.db", "cdp.db-wal")


def _wrapped(rt: Runtime, subject_ids: list[str]) -> dict[str, bytes]:
    with rt.key_engine.connect() as conn:
        rows = conn.execute(
            sa.select(data_keys.c.subject_id, data_keys.c.wrapped).where(
                data_keys.c.subject_id.in_(subject_ids)
            )
        ).all()
    return {r.subject_id: bytes(r.wrapped) for r in rows}


def _ciphertexts(rt: Runtime, subject_id: str) -> list[bytes]:
    """The sealed PII record, each field's ciphertext in it, and the events' properties."""
    from cdp.crypto.sealed_record import unpack

    with rt.data_engine.connect() as conn:
        sealed = conn.execute(
            sa.text("SELECT sealed FROM pii_records WHERE subject_id = :s"), {"s": subject_id}
        ).scalar_one()
        props = conn.execute(
            sa.text("SELECT properties_ct FROM events WHERE subject_id = :s"), {"s": subject_id}
        ).all()
    fields = [bytes(b) for b in unpack(bytes(sealed)).values()]
    return [bytes(sealed), *fields, *(bytes(p) for (p,) in props)]


def _hits(home: Path, needles: list[bytes]) -> dict[str, int]:
    found: dict[str, int] = {}
    for name in FILES:
        path = home / name
        if not path.exists():
            continue
        raw = path.read_bytes()
        n = sum(1 for needle in needles if needle in raw)
        if n:
            found[name] = n
    return found


def _sqlite_only(cdp_env: CdpEnv) -> None:
    if cdp_env.backend != "sqlite":
        pytest.skip("the files of SQLite; PostgreSQL is covered by test_erasure_outcome_on_any")


def test_after_an_erasure_no_file_holds_the_subjects_key_or_ciphertexts(
    cdp_env: CdpEnv,
) -> None:
    _sqlite_only(cdp_env)
    rt = cdp_env.runtime
    target = seed_person(rt, "target")
    other = seed_person(rt, "other")
    # keys created after the target's, in batches as ingestion creates them: the key store's
    # pages split and rows move between them
    for _ in range(10):
        rt.vault.create_keys([new_subject_id() for _ in range(300)])
    wrapped = _wrapped(rt, [target.subject_id])[target.subject_id]
    ciphertexts = _ciphertexts(rt, target.subject_id)
    assert len(ciphertexts) == 7  # sealed record, its 4 fields, 2 events
    needles = [wrapped, *ciphertexts]
    assert _hits(cdp_env.home, needles)  # they were in the files (database or WAL) before

    outcome = erase_subject(runtime=rt, subject_id=target.subject_id)
    assert outcome.keys_shredded == 1
    assert outcome.wal_cleared == {"key_store": True, "data_database": True}
    assert outcome.as_dict()["wal_cleared"] == {"key_store": True, "data_database": True}

    assert _hits(cdp_env.home, needles) == {}
    assert (cdp_env.home / "keys.db-wal").stat().st_size == 0
    # the other person is intact and readable
    fresh = cdp_env.reopen()
    assert _wrapped(fresh, [other.subject_id])
    values = fresh.vault.decrypt_fields(other.subject_id, read_pii(fresh, other.subject_id))
    assert values["email"] == other.email
    assert len(_ciphertexts(fresh, other.subject_id)) == 7


@pytest.fixture
def secure_delete_off_by_default(cdp_env: CdpEnv) -> Iterator[Runtime]:
    """The key store as on an SQLite build whose ``secure_delete`` defaults to off (this one's
    defaults to on): every new connection starts with it off."""
    rt = cdp_env.runtime

    def off(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA secure_delete = OFF")

    event.listen(rt.key_engine, "connect", off)
    rt.key_engine.dispose()
    try:
        yield rt
    finally:
        event.remove(rt.key_engine, "connect", off)
        rt.key_engine.dispose()


def test_the_key_store_zeroes_destroyed_keys_whatever_the_sqlite_default(
    cdp_env: CdpEnv, secure_delete_off_by_default: Runtime
) -> None:
    """Deleted rows, and the space rows leave behind when SQLite moves them between pages, are
    zeroed in the key store also where the build does not do it by default."""
    _sqlite_only(cdp_env)
    rt = secure_delete_off_by_default
    ids: list[str] = []
    for _ in range(20):
        batch = [new_subject_id() for _ in range(200)]
        rt.vault.create_keys(batch)
        ids += batch
    victims = ids[::10]
    wrapped = _wrapped(rt, victims)
    with rt.key_engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
    outcome = erase_subjects(runtime=rt, subject_ids=victims, tombstone=False)
    assert outcome.keys_shredded == len(victims) == 400
    assert outcome.wal_cleared["key_store"] is True
    assert _hits(cdp_env.home, list(wrapped.values())) == {}
    survivors = [s for s in ids if s not in set(victims)]
    assert len(cdp_env.reopen().keystore.unwrapped(survivors)) == len(survivors)


def test_a_reader_holding_an_old_snapshot_delays_the_clearing_not_the_erasure(
    cdp_env: CdpEnv,
) -> None:
    """A reader that began before the shred still sees the key in its snapshot, so the WAL
    cannot be truncated yet: the erasure completes, says so and logs it (without the id); the
    next clear (`cdp keys scrub`, or the next erasure) finishes once the reader is gone."""
    _sqlite_only(cdp_env)
    rt = cdp_env.runtime
    target = seed_person(rt, "slow")
    wrapped = _wrapped(rt, [target.subject_id])[target.subject_id]
    reader = sqlite3.connect(cdp_env.home / "keys.db", isolation_level=None)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM data_keys").fetchone()[0] == 1
        with capture_logs() as logs:
            outcome = erase_subject(runtime=rt, subject_id=target.subject_id)
        assert outcome.keys_shredded == 1 and outcome.deleted["pii_records"] == 1
        assert outcome.wal_cleared == {"key_store": False, "data_database": True}
        warnings = [e for e in logs if e["log_level"] == "warning"]
        assert [e["database"] for e in warnings] == ["key_store"]
        assert target.subject_id not in repr(logs)
        # the shred is committed: nobody reads the key any more, only the old snapshot holds it
        assert _wrapped(rt, [target.subject_id]) == {}
        assert "keys.db-wal" in _hits(cdp_env.home, [wrapped])
    finally:
        reader.close()
    scrub = subprocess.run(
        [*CLI, "keys", "scrub"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
        check=False,
    )
    assert scrub.returncode == 0, scrub.stdout + scrub.stderr
    assert "key_store: WAL cleared" in scrub.stdout
    assert _hits(cdp_env.home, [wrapped]) == {}


def test_erasure_outcome_on_any_backend(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    person = seed_person(rt, "any")
    outcome = erase_subject(runtime=rt, subject_id=person.subject_id).as_dict()
    expected = {} if cdp_env.backend == "postgresql" else {"key_store": True, "data_database": True}
    assert outcome["wal_cleared"] == expected
    assert clear_wals(rt) == expected


def test_scrub_vacuum_removes_keys_an_earlier_release_left_in_the_key_store(
    cdp_env: CdpEnv,
) -> None:
    """Keys deleted as before (``secure_delete`` off, as on builds where it defaults to off) stay
    in ``keys.db``'s free space; `cdp keys scrub --vacuum` rebuilds the file without them."""
    _sqlite_only(cdp_env)
    rt = cdp_env.runtime
    ids = [new_subject_id() for _ in range(600)]
    rt.vault.create_keys(ids)
    victims = ids[::6]
    wrapped = _wrapped(rt, victims)
    old = sqlite3.connect(cdp_env.home / "keys.db", isolation_level=None)
    try:
        old.execute("PRAGMA secure_delete = OFF")
        old.executemany("DELETE FROM data_keys WHERE subject_id = ?", [(v,) for v in victims])
        old.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        old.close()
    assert _hits(cdp_env.home, list(wrapped.values())).get("keys.db", 0) > 50
    scrub = subprocess.run(
        [*CLI, "keys", "scrub", "--vacuum"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
        check=False,
    )
    assert scrub.returncode == 0, scrub.stdout + scrub.stderr
    assert "key store file rebuilt" in scrub.stdout
    assert _hits(cdp_env.home, list(wrapped.values())) == {}
    survivors = [s for s in ids if s not in set(victims)]
    assert len(cdp_env.reopen().keystore.unwrapped(survivors)) == len(survivors)
