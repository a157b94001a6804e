"""Key-check values: a key file restored from an older backup, or from another installation, is
refused at start, by /readyz and by `cdp keys rotate`, and `cdp keys status` shows why."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs
from typer.testing import CliRunner

from cdp.cli import app
from cdp.crypto import provider as provider_module
from cdp.crypto.keyfile import KeyMaterial, new_key_material
from cdp.crypto.keystore_tables import key_checks
from cdp.db.engine import get_engine
from cdp.errors import KeyMaterialError
from cdp.health import readiness
from cdp.runtime import reset_runtime
from tests.conftest import CdpEnv
from tests.factories import make_subject, read_pii

runner = CliRunner()
PII = {"email": "wang.fang@example.cn"}


def _fails_to_start(cdp_env: CdpEnv) -> str:
    try:
        cdp_env.reopen()
    except KeyMaterialError as exc:
        return str(exc)
    raise AssertionError("the runtime started")


def test_an_older_key_file_backup_is_refused(cdp_env: CdpEnv) -> None:
    key_file = cdp_env.settings.resolved_key_file
    sid = make_subject(cdp_env.runtime, PII)
    assert runner.invoke(app, ["keys", "rotate"]).exit_code == 0
    backup = key_file.read_bytes()  # versions 1 and 2
    for _ in range(2):
        assert runner.invoke(app, ["keys", "rotate"]).exit_code == 0
    assert runner.invoke(app, ["keys", "rewrap"]).exit_code == 0  # every key under version 4
    current = key_file.read_bytes()
    key_file.write_bytes(backup)
    reset_runtime()
    message = _fails_to_start(cdp_env)
    assert "KEK version 4, which the key file lacks" in message
    rotate = runner.invoke(app, ["keys", "rotate"])  # no second, different "version 4"
    assert rotate.exit_code != 0 and isinstance(rotate.exception, KeyMaterialError)
    assert key_file.read_bytes() == backup
    status = runner.invoke(app, ["keys", "status"])
    assert status.exit_code == 1 and "KEK version 4, which the key file lacks" in status.stdout
    assert readiness(settings=cdp_env.settings)["key_file"] is False
    key_file.write_bytes(current)  # the newest key file: everything works again
    rt = cdp_env.reopen()
    assert rt.vault.decrypt(sid, "email", read_pii(rt, sid)["email"]) == PII["email"]
    assert readiness(settings=cdp_env.settings)["key_file"] is True


def test_rotate_refuses_a_version_number_the_key_store_knows(cdp_env: CdpEnv) -> None:
    key_file = cdp_env.settings.resolved_key_file
    make_subject(cdp_env.runtime, PII)  # under version 1
    backup = key_file.read_bytes()
    assert runner.invoke(app, ["keys", "rotate"]).exit_code == 0  # version 2, nothing under it
    key_file.write_bytes(backup)
    reset_runtime()
    cdp_env.reopen()  # nothing is wrapped under version 2 yet: the process may start
    refused = runner.invoke(app, ["keys", "rotate"])
    assert refused.exit_code != 0
    assert "already knows KEK version 2" in str(refused.exception)
    assert key_file.read_bytes() == backup  # nothing minted


def test_a_key_file_from_another_installation_is_refused(cdp_env: CdpEnv) -> None:
    key_file = cdp_env.settings.resolved_key_file
    make_subject(cdp_env.runtime, PII)
    key_file.write_text(KeyMaterial(new_key_material()).to_json())
    reset_runtime()
    message = _fails_to_start(cdp_env)
    assert "kek version 1 of the key file is not the key" in message
    assert "pseudonym version 1 of the key file is not the key" in message
    status = runner.invoke(app, ["keys", "status"])
    assert status.exit_code == 1 and "pseudonym version 1" in status.stdout
    assert readiness(settings=cdp_env.settings)["key_file"] is False


def test_versions_are_recorded_on_first_use_and_never_the_key(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    with rt.key_engine.begin() as conn:  # a key store from before the key checks
        conn.execute(sa.delete(key_checks))
    rt = cdp_env.reopen()
    with rt.key_engine.connect() as conn:
        rows = conn.execute(sa.select(key_checks.c.ring, key_checks.c.version)).all()
        values = conn.execute(sa.select(key_checks.c.check_value)).scalars().all()
    assert sorted(rows) == [("kek", 1), ("pseudonym", 1)]
    material = rt.provider.material
    for secret in (material.key("kek", 1), material.key("pseudonym", 1)):
        assert all(secret.hex()[:32] != v for v in values)
    version = rt.provider.rotate()  # a rotation outside `cdp keys rotate`: recorded at next start
    cdp_env.reopen()
    with rt.key_engine.connect() as conn:
        assert conn.execute(
            sa.select(key_checks.c.version).where(
                key_checks.c.ring == "kek", key_checks.c.version == version
            )
        ).first()


def test_an_unrecorded_store_does_not_take_another_installation_s_key_file(
    cdp_env: CdpEnv,
) -> None:
    """A key store from before the key checks, given another installation's key file: its
    values must not be recorded (the right file would then be locked out once restored)."""
    key_file = cdp_env.settings.resolved_key_file
    sid = make_subject(cdp_env.runtime, PII)
    with cdp_env.runtime.key_engine.begin() as conn:
        conn.execute(sa.delete(key_checks))
    right = key_file.read_bytes()
    key_file.write_text(KeyMaterial(new_key_material()).to_json())
    reset_runtime()
    message = _fails_to_start(cdp_env)
    assert "kek version 1 of the key file does not open the data keys" in message
    with get_engine(cdp_env.settings.keys_url).connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(key_checks)).scalar_one() == 0
    key_file.write_bytes(right)  # the right file is taken, and recorded
    rt = cdp_env.reopen()
    assert rt.vault.decrypt(sid, "email", read_pii(rt, sid)["email"]) == PII["email"]
    with rt.key_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(key_checks)).scalar_one() == 2


def test_a_key_file_swapped_under_a_running_process_is_not_used(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process looks at the key file again before wrapping (rotations are picked up without
    a restart); a file that does not belong to this key store must not be taken up: the data
    keys of people created after the swap would be wrapped under another installation's
    "version 1" and unreadable once the right file is back."""
    monkeypatch.setattr(provider_module, "KEY_FILE_RECHECK_SECONDS", 0.0)
    rt = cdp_env.runtime
    key_file = cdp_env.settings.resolved_key_file
    right = key_file.read_bytes()
    key_file.write_text(KeyMaterial(new_key_material()).to_json())
    with capture_logs() as logs:
        sid = make_subject(rt, PII)  # its data key is wrapped after the swap
    refused = [e for e in logs if e["event"].startswith("the key file changed")]
    assert refused and "does not belong to this key store" in refused[0]["reason"]
    assert len(refused) == 1  # once per change of the file, not once a wrap
    assert make_subject(rt, {"email": "li.na@example.cn"})
    key_file.write_bytes(right)
    rt = cdp_env.reopen()  # the right file again, a fresh process: the key unwraps
    assert rt.vault.decrypt(sid, "email", read_pii(rt, sid)["email"]) == PII["email"]


def test_a_rotation_under_a_running_process_is_still_taken_up(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(provider_module, "KEY_FILE_RECHECK_SECONDS", 0.0)
    rt = cdp_env.runtime
    assert runner.invoke(app, ["keys", "rotate"]).exit_code == 0
    sid = make_subject(rt, PII)
    assert rt.provider.current_version() == 2
    assert rt.keystore.deks_per_version() == {2: 1}
    assert rt.vault.decrypt(sid, "email", read_pii(rt, sid)["email"]) == PII["email"]


def test_a_changed_key_file_is_not_taken_up_when_it_cannot_be_compared(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At start a key store whose schema is behind is not compared (``cdp init`` upgrades it);
    a file changed under a running process is: if the key store cannot answer, the reload
    fails and the material in use stays, instead of the new file passing unchecked."""
    from sqlalchemy.exc import OperationalError

    from cdp.crypto import key_checks

    monkeypatch.setattr(provider_module, "KEY_FILE_RECHECK_SECONDS", 0.0)
    rt = cdp_env.runtime
    before = rt.provider.material
    key_file = cdp_env.settings.resolved_key_file
    key_file.write_text(KeyMaterial(new_key_material()).to_json())

    def unreachable(*args: object, **kwargs: object) -> None:
        raise OperationalError("SELECT key_checks", {}, Exception("database is locked"))

    monkeypatch.setattr(key_checks, "verify_and_record", unreachable)
    with pytest.raises(OperationalError):
        rt.provider.current_version()
    assert rt.provider.material is before
