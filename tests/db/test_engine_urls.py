"""What a database URL's scheme gets: ``postgresql://`` (no driver named) is psycopg 3 whatever
SQLAlchemy's own default for it (psycopg2 before SQLAlchemy 2.1); a dialect SQLAlchemy knows
whose driver is not installed is a ``ConfigurationError`` naming the scheme, never the password
(the CLI's one-line refusals are in ``tests/cli/test_configuration_errors.py``)."""

from __future__ import annotations

import importlib.util

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import base as pg_base
from sqlalchemy.dialects.postgresql import psycopg2 as pg_psycopg2
from sqlalchemy.engine import make_url

from cdp.db.engine import build_engine
from cdp.errors import ConfigurationError
from tests.conftest import PG_URL

SECRET = "S3cretPw"


def _url(drivername: str) -> str:
    """A URL of the test's PostgreSQL server (any on SQLite: nothing connects) with
    ``drivername`` and a password."""
    url = make_url(PG_URL or "postgresql+psycopg://cdp@127.0.0.1:5432/cdp")
    return url.set(drivername=drivername, password=SECRET).render_as_string(hide_password=False)


@pytest.mark.parametrize(
    ("scheme", "module"),
    [
        ("postgresql+psycopg2", "psycopg2"),
        ("postgresql+asyncpg", "asyncpg"),
        ("postgresql+pg8000", "pg8000"),
        ("mysql", "MySQLdb"),
        ("mysql+pymysql", "pymysql"),
    ],
)
def test_a_known_dialect_without_its_driver_is_a_configuration_error(
    scheme: str, module: str
) -> None:
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here")
    with pytest.raises(ConfigurationError) as caught:
        build_engine(_url(scheme))
    message = str(caught.value)
    assert f"no database driver for {scheme!r}" in message
    assert "sqlite" in message and "postgresql+psycopg" in message
    assert SECRET not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_postgresql_without_a_driver_means_psycopg_3() -> None:
    engine = build_engine(_url("postgresql"))
    try:
        assert engine.url.drivername == "postgresql+psycopg"
        assert engine.dialect.driver == "psycopg"
        if PG_URL is not None:
            with engine.connect() as conn:
                assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()


def test_postgresql_means_psycopg_3_where_sqlalchemy_means_psycopg2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SQLAlchemy before 2.1 (pyproject allows 2.0.30) takes ``postgresql://`` for psycopg2,
    which cdp does not install: as it does, the URL still gets psycopg 3."""
    monkeypatch.setattr(pg_base, "dialect", pg_psycopg2.dialect)
    engine = build_engine(_url("postgresql"))
    try:
        assert engine.dialect.driver == "psycopg"
    finally:
        engine.dispose()


def test_postgres_alias_and_an_unknown_dialect_stay_refused() -> None:
    for scheme in ("postgres", "nosuch"):
        with pytest.raises(ConfigurationError, match=f"no database driver for '{scheme}'"):
            build_engine(_url(scheme))
