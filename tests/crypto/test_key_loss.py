"""A lost or deleted key file or key store is never silently replaced by new, empty material."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from cdp.bootstrap import initialize
from cdp.cli import app
from cdp.crypto.keystore_tables import data_keys
from cdp.errors import KeyMaterialError
from cdp.runtime import reset_runtime
from cdp.settings import reset_settings
from tests.conftest import CdpEnv
from tests.factories import make_subject, read_pii

runner = CliRunner()
PII = {"email": "wang.fang@example.cn"}


def _lose_key_store(cdp_env: CdpEnv) -> None:
    """What deleting ``keys.db`` is: on PostgreSQL, a key store without its keys."""
    rt = cdp_env.runtime
    if cdp_env.backend == "sqlite":
        reset_runtime()
        for suffix in ("", "-wal", "-shm"):
            (cdp_env.home / f"keys.db{suffix}").unlink(missing_ok=True)
    else:
        with rt.key_engine.begin() as conn:
            conn.execute(sa.delete(data_keys))
        reset_runtime()


def test_init_refuses_a_new_key_file_beside_data_keys(cdp_env: CdpEnv) -> None:
    sid = make_subject(cdp_env.runtime, PII)
    key_file = cdp_env.runtime.settings.resolved_key_file
    original = key_file.read_bytes()
    key_file.unlink()
    reset_runtime()
    refused = runner.invoke(app, ["init"])
    assert refused.exit_code != 0
    message = str(refused.exception)
    assert isinstance(refused.exception, KeyMaterialError)
    assert "restore the key file" in message and "data keys" in message
    assert not key_file.exists()  # nothing minted
    with pytest.raises(KeyMaterialError) as missing:  # every command: restore, not `cdp init`
        cdp_env.reopen()
    assert "restore it from its backup" in str(missing.value)
    assert "; run `cdp init`" not in str(missing.value)
    key_file.write_bytes(original)  # the documented recovery
    key_file.chmod(0o600)
    assert runner.invoke(app, ["init"]).exit_code == 0
    rt = cdp_env.reopen()
    assert rt.vault.decrypt(sid, "email", read_pii(rt, sid)["email"]) == PII["email"]


def test_init_refuses_a_new_key_file_beside_subjects_without_keys(cdp_env: CdpEnv) -> None:
    make_subject(cdp_env.runtime, PII)
    cdp_env.runtime.settings.resolved_key_file.unlink()
    _lose_key_store(cdp_env)
    with pytest.raises(KeyMaterialError, match="restore the key file"):
        initialize(cdp_env.settings)
    assert not cdp_env.settings.resolved_key_file.exists()


def test_init_refuses_an_empty_key_store_beside_subjects(cdp_env: CdpEnv) -> None:
    make_subject(cdp_env.runtime, PII)
    _lose_key_store(cdp_env)
    with pytest.raises(KeyMaterialError, match="restore the key store"):
        initialize(cdp_env.settings)
    if cdp_env.backend == "sqlite":
        assert not (cdp_env.home / "keys.db").exists()  # not even an empty file


def test_a_new_installation_still_gets_its_key_file(cdp_env: CdpEnv) -> None:
    key_file = cdp_env.runtime.settings.resolved_key_file
    key_file.unlink()
    reset_runtime()
    with pytest.raises(KeyMaterialError, match="run `cdp init`"):
        cdp_env.reopen()
    reset_settings()
    created = runner.invoke(app, ["init"])
    assert created.exit_code == 0 and "created" in created.stdout
    assert key_file.exists()
