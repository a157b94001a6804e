"""Databases whose schema is not at this release's migration heads: an older release's (before
``cdp init`` upgraded them), none at all (a key store URL at a new, empty database), or one
this release does not know.

Every command that opens the runtime refuses them in one line, exit status 2, saying which
database is at which revision and what to do (``cdp init`` upgrades), or, for a key store
without a schema beside a data database that holds subjects, the ``key_error`` that ``cdp init``
gives in that case: never a driver's "no such table" (exit 3, "database unavailable") nor an
internal error's traceback. ``cdp init``, ``--version``, ``--help``, ``cdp generate`` and
``cdp demo`` (which upgrades first) still run, and ``cdp serve`` starts and answers ``/readyz``
503. The check is the one ``/readyz`` makes, read once per database per process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from cdp.db import migrate
from cdp.db.engine import get_engine
from cdp.errors import ConfigurationError, KeyMaterialError
from cdp.runtime import get_runtime, reset_runtime
from cdp.settings import reset_settings
from tests.conftest import PG_URL, CdpEnv
from tests.crash.helpers import CLI, free_port
from tests.factories import make_subject

OLD_DATA, OLD_KEYS = "0012c", "k0002"  # an older release's heads

NewDatabase = Callable[[str], str]


@pytest.fixture
def new_database(cdp_env: CdpEnv) -> Iterator[NewDatabase]:
    """Makes empty databases of the test's backend (``new_database(label)`` -> its URL); on
    PostgreSQL they are dropped at the end."""
    made: list[str] = []

    def make(label: str) -> str:
        if PG_URL is None:
            return f"sqlite:///{cdp_env.home / f'{label}.db'}"
        name = f"cdp_{label}_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        made.append(name)
        return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)

    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT") if PG_URL else None
    try:
        yield make
    finally:
        reset_runtime()
        if admin is not None:
            with admin.connect() as conn:
                for name in made:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.dispose()


def _use(
    monkeypatch: pytest.MonkeyPatch, *, data: str | None = None, keys: str | None = None
) -> None:
    """Point this process (and the commands it starts) at other databases."""
    if data is not None:
        monkeypatch.setenv("CDP_DATABASE_URL", data)
    if keys is not None:
        monkeypatch.setenv("CDP_KEYSTORE_URL", keys)
    reset_settings()
    reset_runtime()


@pytest.fixture
def older_release(
    cdp_env: CdpEnv, new_database: NewDatabase, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, str]:
    """Both databases as an older release left them (the key file is the test's own)."""
    data, keys = new_database("old_data"), new_database("old_keys")
    migrate.upgrade(get_engine(data), "data", OLD_DATA)
    migrate.upgrade(get_engine(keys), "keystore", OLD_KEYS)
    _use(monkeypatch, data=data, keys=keys)
    return data, keys


def _cdp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _refusal(done: subprocess.CompletedProcess[str], code: str) -> str:
    """The one line of a refusal (exit status 2) with error code ``code``."""
    output = done.stdout + done.stderr
    lines = [line for line in output.splitlines() if line.strip()]
    assert done.returncode == 2, output[-3000:]
    assert len(lines) == 1 and lines[0].startswith(f"error ({code}): "), output[-3000:]
    assert "Traceback" not in output
    return lines[0]


def test_commands_refuse_an_older_releases_schema_in_one_line(
    older_release: tuple[str, str], tmp_path: Path
) -> None:
    shop = tmp_path / "shop"
    generated = _cdp("generate", "--customers", "5", "--orders", "5", "--out", str(shop))
    assert generated.returncode == 0, generated.stderr
    for args in (
        ("keys", "status"),
        ("ingest", "customers", str(shop / "customers.csv")),
        ("profiles", "find", "--email", "a@example.com", "--token", "x", "--purpose", "support"),
    ):
        line = _refusal(_cdp(*args), "configuration_error")
        assert f"data database is at schema revision {OLD_DATA}" in line, line
        assert f"key store is at schema revision {OLD_KEYS}" in line, line
        assert "run `cdp init` to upgrade" in line, line
    for args in (("--version",), ("--help",), ("keys", "status", "--help"), ("ingest", "--help")):
        done = _cdp(*args)
        assert done.returncode == 0, done.stdout + done.stderr
    assert migrate.current_revisions(get_engine(older_release[0]), "data") == (OLD_DATA,)

    upgraded = _cdp("init")
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    done = _cdp("keys", "status")
    assert done.returncode == 0, done.stdout + done.stderr


def test_an_empty_key_store_beside_subjects_is_the_refusal_cdp_init_gives(
    cdp_env: CdpEnv, new_database: NewDatabase, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    make_subject(cdp_env.runtime, {"email": "a@example.com"})
    _use(monkeypatch, keys=new_database("empty_keys"))
    init = _refusal(_cdp("init"), "key_error")
    assert "the key store holds no data keys but the data database holds subjects" in init
    customers = tmp_path / "customers.csv"
    customers.write_text("customer_id,email\nc1,b@example.com\n")
    for args in (("keys", "status"), ("ingest", "customers", str(customers))):
        assert _refusal(_cdp(*args), "key_error") == init
    with pytest.raises(KeyMaterialError) as caught:
        get_runtime()
    assert f"error (key_error): {caught.value}" == init


def _refused(match: str) -> str:
    with pytest.raises(ConfigurationError) as caught:
        get_runtime()
    message = str(caught.value)
    assert match in message, message
    return message


def test_each_database_is_named_at_its_revision(
    cdp_env: CdpEnv, new_database: NewDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    current_data = cdp_env.settings.data_url
    current_keys = cdp_env.settings.keys_url
    old_data, old_keys = new_database("old_data"), new_database("old_keys")
    migrate.upgrade(get_engine(old_data), "data", OLD_DATA)
    migrate.upgrade(get_engine(old_keys), "keystore", OLD_KEYS)

    _use(monkeypatch, data=old_data, keys=current_keys)
    message = _refused(f"the data database is at schema revision {OLD_DATA}")
    assert "key store" not in message and "run `cdp init` to upgrade it" in message

    _use(monkeypatch, data=current_data, keys=old_keys)
    message = _refused(f"the key store is at schema revision {OLD_KEYS}")
    assert "data database" not in message

    # a key store without a schema beside a data database without subjects: cdp init makes it
    _use(monkeypatch, keys=new_database("no_keys"))
    _refused("the key store has no schema: run `cdp init` to create it")
    if PG_URL is None:  # asking does not create the SQLite file
        assert not (cdp_env.home / "no_keys.db").exists()

    # a revision this release has no migration for: cdp init cannot help
    newer = new_database("newer_keys")
    migrate.upgrade(get_engine(newer), "keystore")
    with get_engine(newer).begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version_keystore SET version_num = 'k9999'")
    _use(monkeypatch, keys=newer)
    message = _refused("the key store is at schema revision k9999, which this cdp does not know")
    assert "cdp init" not in message


def test_the_schema_is_read_once_per_database_per_process(cdp_env: CdpEnv) -> None:
    """One small query per database, whatever the number of ``get_runtime`` calls, and no
    import of alembic (a few tenths of a second of every command) while the schema is right."""
    reset_runtime()
    reads: list[str] = []

    def count(conn: sa.Connection, cursor: object, statement: str, *args: object) -> None:
        if "alembic_version" in statement:
            reads.append(statement)

    engines = [get_engine(cdp_env.settings.data_url), get_engine(cdp_env.settings.keys_url)]
    for engine in engines:
        sa.event.listen(engine, "before_cursor_execute", count)
    try:
        for _ in range(3):
            get_runtime()
    finally:
        for engine in engines:
            sa.event.remove(engine, "before_cursor_execute", count)
    assert sorted(reads) == [
        "SELECT version_num FROM alembic_version",
        "SELECT version_num FROM alembic_version_keystore",
    ]

    probe = (
        "import sys\n"
        "from cdp.cli import main\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print('alembic' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, "keys", "status"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "False", done.stderr


def test_the_server_starts_and_is_not_ready(older_release: tuple[str, str], tmp_path: Path) -> None:
    """``cdp serve`` (its retention and export jobs too) starts on an older schema and answers
    ``/readyz`` 503 until ``cdp init`` upgrades it, as docs/operations.md says."""
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [*CLI, "serve", "--port", str(port)], stdout=fh, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                ready = httpx.get(f"{base}/readyz", timeout=5)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert ready.status_code == 503, ready.text
        assert {"loc": "migrations", "msg": "fail"} in ready.json()["error"]["details"]
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        assert _cdp("init").returncode == 0
        assert httpx.get(f"{base}/readyz", timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.wait(60)


def test_the_demo_upgrades_first(
    older_release: tuple[str, str], capfd: pytest.CaptureFixture[str]
) -> None:
    from cdp.cli import app

    result = CliRunner().invoke(app, ["demo", "--customers", "200", "--orders", "1200"])
    captured = capfd.readouterr()
    assert result.exit_code == 0, (result.output + captured.out + captured.err)[-3000:]
    assert "demo finished" in result.output
    heads = migrate.head_revisions("data")
    assert migrate.current_revisions(get_engine(older_release[0]), "data") == heads
