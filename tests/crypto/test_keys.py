"""Key file, rotation, rewrap, retirement, usage bound, crypto-shredding — on real storage."""

from __future__ import annotations

import shutil
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from cdp.crypto.keystore_tables import data_keys
from cdp.crypto.normalize import IdentityKind
from cdp.crypto.sealed_record import unpack
from cdp.crypto.vault import Vault
from cdp.errors import DecryptionError, KeyMaterialError, KeyUsageExhaustedError
from cdp.logging import get_logger
from tests.conftest import CdpEnv
from tests.factories import checkpoint_sqlite, make_subject, read_pii

PII = {"email": "wang.fang@example.cn", "first_name": "芳", "last_name": "王"}


def test_key_file_is_private(cdp_env: CdpEnv) -> None:
    key_file = cdp_env.runtime.settings.resolved_key_file
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(cdp_env.home.stat().st_mode) == 0o700


def test_values_roundtrip_through_the_vault(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt, PII, {IdentityKind.EMAIL: PII["email"]})
    rt2 = cdp_env.reopen()  # a new process: nothing cached
    assert rt2.vault.decrypt_fields(sid, read_pii(rt2, sid)) == PII


def test_rotate_write_rewrap_retire(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    before = [make_subject(rt, PII) for _ in range(5)]
    new_version = rt.provider.rotate()
    assert new_version == 2
    after = [make_subject(rt, PII) for _ in range(3)]
    assert rt.keystore.deks_per_version() == {1: 5, 2: 3}
    with pytest.raises(KeyMaterialError, match="rewrap"):
        rt.keystore.retire(1)
    rt.vault.forget_cached()
    for sid in before + after:  # readable between rotate and rewrap
        assert rt.vault.decrypt_fields(sid, read_pii(rt, sid)) == PII
    assert rt.keystore.rewrap(batch_size=2) == 5
    assert rt.keystore.deks_per_version() == {2: 8}
    rt.keystore.retire(1)
    rt2 = cdp_env.reopen()
    for sid in before + after:
        assert rt2.vault.decrypt_fields(sid, read_pii(rt2, sid)) == PII
    status = {s.version: s for s in rt2.keystore.status()}
    assert status[1].retired and status[1].deks == 0
    assert status[2].current and status[2].deks == 8 and status[2].wraps == 8
    with pytest.raises(KeyMaterialError):
        rt2.provider.material.key("kek", 1)


def test_usage_bound_refuses_to_wrap(cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDP_KEK_MAX_WRAPS", "3")
    rt = cdp_env.reopen()
    for _ in range(3):
        make_subject(rt, PII)
    with pytest.raises(KeyUsageExhaustedError, match="cdp keys rotate"):
        make_subject(rt, PII)
    rt.provider.rotate()
    make_subject(rt, PII)  # the new version has its own budget
    assert rt.keystore.wraps_per_version() == {1: 3, 2: 1}


def test_shred_erases_one_subject_even_in_an_old_backup(cdp_env: CdpEnv, tmp_path: Path) -> None:
    rt = cdp_env.runtime
    victim = make_subject(rt, PII)
    neighbour = make_subject(rt, {**PII, "email": "li.lei@example.cn"})
    backup = read_pii(rt, victim)  # a copy of the data taken before the shred
    assert rt.vault.shred([victim]) == 1
    rt2 = cdp_env.reopen()
    for field, blob in backup.items():
        with pytest.raises(DecryptionError):
            rt2.vault.decrypt(victim, field, blob)
    assert rt2.vault.decrypt(neighbour, "email", read_pii(rt2, neighbour)["email"]) == (
        "li.lei@example.cn"
    )
    with rt2.key_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(data_keys)).scalar_one() == 1


def test_shred_also_defeats_a_copied_sqlite_data_file(cdp_env: CdpEnv, tmp_path: Path) -> None:
    if cdp_env.backend != "sqlite":
        pytest.skip("file copy is the SQLite form of a backup; the PostgreSQL dump is tested below")
    rt = cdp_env.runtime
    victim = make_subject(rt, PII)
    checkpoint_sqlite(str(cdp_env.home / "cdp.db"))
    shutil.copy(cdp_env.home / "cdp.db", tmp_path / "backup.db")
    rt.vault.shred([victim])
    old = sqlite3.connect(tmp_path / "backup.db")
    [(sealed,)] = old.execute("SELECT sealed FROM pii_records WHERE subject_id=?", (victim,))
    rt2 = cdp_env.reopen()
    fields = 0
    for field, blob in unpack(sealed).items():
        fields += 1
        with pytest.raises(DecryptionError):
            rt2.vault.decrypt(victim, field, bytes(blob))
    assert fields == len(PII)


def _key_bytes(cdp_env: CdpEnv) -> list[bytes]:
    mat = cdp_env.runtime.provider.material
    keys = list(mat.live_keys("kek").values()) + list(mat.live_keys("pseudonym").values())
    keys.append(mat.signing_key())
    return keys


def _needles(keys: list[bytes]) -> list[bytes]:
    import base64

    out = []
    for k in keys:
        out += [k, k.hex().encode(), base64.b64encode(k)]
    return out


def test_no_key_bytes_in_the_databases_dumps_logs_or_reprs(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    sids = [make_subject(rt, PII, {IdentityKind.EMAIL: f"u{i}@example.cn"}) for i in range(3)]
    deks = rt.keystore.load(sids)
    keys = _key_bytes(cdp_env) + [d.key for d in deks.values()]
    needles = _needles(keys)
    if cdp_env.backend == "sqlite":
        checkpoint_sqlite(str(cdp_env.home / "cdp.db"))
        blobs = [(cdp_env.home / "cdp.db").read_bytes()]
        wal = cdp_env.home / "cdp.db-wal"
        if wal.exists():
            blobs.append(wal.read_bytes())
    else:
        url = rt.settings.data_url.replace("postgresql+psycopg", "postgresql")
        blobs = [subprocess.run(["pg_dump", url], capture_output=True, check=True).stdout]
    # the data database never holds any key (wrapped DEKs live in the key store)
    for blob in blobs:
        for needle in needles:
            assert needle not in blob
    with capture_logs() as logs:
        get_logger().info("runtime", runtime=rt, vault=rt.vault, deks=list(deks.values()))
    texts = [
        repr(rt),
        repr(rt.vault),
        repr(rt.provider),
        repr(rt.provider.material),
        repr(rt.tokenizer),
        repr(rt.keystore),
        repr(list(deks.values())),
        repr(logs),
        repr(rt.settings),
    ]
    for text in texts:
        for needle in needles:
            assert needle.decode("latin-1") not in text


def test_wrapped_key_moved_to_another_subject_does_not_unwrap(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    a, b = make_subject(rt, PII), make_subject(rt, PII)
    with rt.key_engine.begin() as conn:
        wrapped_a = conn.execute(
            sa.select(data_keys.c.wrapped).where(data_keys.c.subject_id == a)
        ).scalar_one()
        conn.execute(
            sa.update(data_keys).where(data_keys.c.subject_id == b).values(wrapped=wrapped_a)
        )
    fresh = Vault(rt.keystore)
    with pytest.raises(DecryptionError):
        fresh.decrypt(b, "email", read_pii(rt, b)["email"])


def test_master_keys_from_the_environment(cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    content = cdp_env.runtime.settings.resolved_key_file.read_text()
    sid = make_subject(cdp_env.runtime, PII)
    cdp_env.runtime.settings.resolved_key_file.unlink()
    monkeypatch.setenv("CDP_MASTER_KEYS", content)
    rt = cdp_env.reopen()
    assert rt.vault.decrypt_fields(sid, read_pii(rt, sid)) == PII
    with pytest.raises(KeyMaterialError, match="CDP_MASTER_KEYS"):
        rt.provider.rotate()
    assert "CDP_MASTER_KEYS" not in repr(rt.settings) or content not in repr(rt.settings)
