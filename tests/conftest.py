"""Test environments on the embedded SQLite default or on PostgreSQL.

``CDP_TEST_DATABASE_URL`` (e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/test``) switches
the whole suite to PostgreSQL: each test run (each xdist worker) creates its own pair of databases
(data and key store), migrates them once, empties them between tests, and drops them at the end.
Without it every test gets fresh SQLite files copied from a migrated template.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from cdp.bootstrap import initialize
from cdp.db.engine import dispose_engines, get_engine
from cdp.runtime import Runtime, get_runtime, reset_runtime
from cdp.settings import Settings, get_settings, reset_settings

PG_URL = os.environ.get("CDP_TEST_DATABASE_URL")
ENV_KEYS = ("CDP_HOME", "CDP_DATABASE_URL", "CDP_KEYSTORE_URL", "CDP_KEY_FILE", "CDP_MASTER_KEYS")


@dataclass
class Backend:
    name: str
    data_url: str | None
    keys_url: str | None
    template_home: Path


def _admin_engine() -> sa.Engine:
    assert PG_URL is not None
    return sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    template = tmp_path_factory.mktemp("template-home")
    for key in ENV_KEYS:
        os.environ.pop(key, None)
    if PG_URL is None:
        os.environ["CDP_HOME"] = str(template)
        reset_settings()
        initialize(get_settings())
        dispose_engines()
        yield Backend("sqlite", None, None, template)
        return
    base = f"cdp_test_{uuid.uuid4().hex[:10]}"
    names = [base, base + "_keys"]
    admin = _admin_engine()
    with admin.connect() as conn:
        for name in names:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = make_url(PG_URL)
    data_url = url.set(database=names[0]).render_as_string(hide_password=False)
    keys_url = url.set(database=names[1]).render_as_string(hide_password=False)
    os.environ.update(CDP_HOME=str(template), CDP_DATABASE_URL=data_url, CDP_KEYSTORE_URL=keys_url)
    reset_settings()
    try:
        initialize(get_settings())
        yield Backend("postgresql", data_url, keys_url, template)
    finally:
        reset_runtime()
        with admin.connect() as conn:
            for name in names:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def _empty_postgres(url: str) -> None:
    engine = get_engine(url)
    with engine.begin() as conn:
        tables = [
            r[0]
            for r in conn.exec_driver_sql(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND left(tablename, 15) <> 'alembic_version'"
            )
        ]
        if tables:
            # the audit tables refuse TRUNCATE (migration 0016a): triggers off for this one
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            conn.exec_driver_sql(
                "TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"
            )


@dataclass
class CdpEnv:
    """One test's cdp installation."""

    home: Path
    backend: str

    @property
    def settings(self) -> Settings:
        return get_settings()

    @property
    def runtime(self) -> Runtime:
        return get_runtime()

    def reopen(self, *, check_schema: bool = True) -> Runtime:
        """Forget cached settings, engines and keys, as a new process would. ``check_schema``
        off: open databases whose schema is not at the heads, as the API server does (a
        migration test reading through an older schema)."""
        reset_settings()
        reset_runtime()
        return get_runtime(check_schema=check_schema)


@pytest.fixture
def cdp_env(backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CdpEnv]:
    home = tmp_path / "home"
    shutil.copytree(backend.template_home, home)
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("CDP_HOME", str(home))
    if backend.data_url is not None and backend.keys_url is not None:
        monkeypatch.setenv("CDP_DATABASE_URL", backend.data_url)
        monkeypatch.setenv("CDP_KEYSTORE_URL", backend.keys_url)
        reset_settings()
        reset_runtime()
        _empty_postgres(backend.data_url)
        _empty_postgres(backend.keys_url)
    reset_settings()
    reset_runtime()
    try:
        yield CdpEnv(home=home, backend=backend.name)
    finally:
        reset_runtime()
        reset_settings()
