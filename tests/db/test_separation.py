"""The key store in the data database is refused however its URL is written: another host name
for the same server, a port left out, another driver name, a query parameter, ``./`` or a link
in a SQLite path. Before, only the identical string was refused, and ``cdp init`` created the
key store's tables, with every wrapped data key, inside the data database (so inside its
backups)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from cdp.bootstrap import initialize
from cdp.db.engine import build_engine
from cdp.db.separation import SAME_DATABASE, check_separate
from cdp.errors import ConfigurationError
from cdp.runtime import open_runtime, reset_runtime
from cdp.settings import get_settings, reset_settings
from tests.conftest import CdpEnv
from tests.crash.helpers import CLI


def _spellings(cdp_env: CdpEnv) -> list[str]:
    """Other URLs of the data database."""
    url = make_url(get_settings().data_url)
    if cdp_env.backend == "sqlite":
        data = Path(str(url.database))
        link = data.parent / "link-to-cdp.db"
        link.symlink_to(data)
        return [
            f"sqlite:///{data.parent}/./{data.name}",
            f"sqlite:///{data.parent.parent}/{data.parent.name}/../{data.parent.name}/{data.name}",
            f"sqlite:///{link}",
        ]
    assert url.host == "127.0.0.1" and url.port is not None
    return [
        url.set(host="localhost").render_as_string(hide_password=False),
        url.render_as_string(hide_password=False).replace(f":{url.port}/", "/"),
        url.set(drivername="postgresql").render_as_string(hide_password=False),
        url.update_query_dict({"application_name": "keys"}).render_as_string(hide_password=False),
    ]


def _key_tables_in_data(cdp_env: CdpEnv) -> set[str]:
    engine = build_engine(get_settings().data_url)
    try:
        return {"data_keys", "kek_usage", "key_checks"} & set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_a_key_store_url_reaching_the_data_database_is_refused(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not _key_tables_in_data(cdp_env)
    for spelling in _spellings(cdp_env):
        monkeypatch.setenv("CDP_KEYSTORE_URL", spelling)
        reset_settings()
        reset_runtime()
        with pytest.raises(ConfigurationError) as init:
            initialize(get_settings())
        assert str(init.value) == SAME_DATABASE, spelling
        with pytest.raises(ConfigurationError) as start:
            open_runtime(get_settings())
        assert str(start.value) == SAME_DATABASE, spelling
    assert not _key_tables_in_data(cdp_env)  # nothing was created in the data database


def test_separate_databases_pass(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    check_separate(rt.data_engine, rt.key_engine)  # the installation every other test uses


def test_the_cli_refuses_in_one_line(cdp_env: CdpEnv) -> None:
    [spelling, *_] = _spellings(cdp_env)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDP_")}
    settings = get_settings()
    env.update(
        CDP_HOME=str(cdp_env.home),
        CDP_DATABASE_URL=settings.data_url,
        CDP_KEYSTORE_URL=spelling,
        COLUMNS="200",
    )
    for command in (["init"], ["keys", "status"]):
        done = subprocess.run(
            [*CLI, *command], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        output = done.stdout + done.stderr
        assert done.returncode == 2, output
        lines = [line for line in output.splitlines() if line.strip()]
        assert lines == [f"error (configuration_error): {SAME_DATABASE}"], output
    assert not _key_tables_in_data(cdp_env)
