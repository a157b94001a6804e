"""The database going away mid-service: API routes answer 503 ``database_unavailable`` with
``Retry-After`` and the request id, like ``/readyz``; they answered a 500 (which means a bug),
without the ``X-Request-ID`` every other answer carries."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from cdp.api.app import create_app
from tests.audit.factories import make_principal
from tests.conftest import CdpEnv


@contextmanager
def _outage(env: CdpEnv) -> Iterator[None]:
    """The data database unreachable, for real: SQLite's file moved away (a new connection
    finds an empty database), PostgreSQL's database closed to connections."""
    rt = env.runtime
    url = make_url(env.settings.data_url)
    rt.data_engine.dispose()
    if env.backend == "sqlite":
        assert url.database is not None
        moved = url.database + ".away"
        shutil.move(url.database, moved)
        try:
            yield
        finally:
            rt.data_engine.dispose()
            shutil.move(moved, url.database)
        return
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    name = url.database
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
        yield
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()
        rt.data_engine.dispose()


def test_a_database_outage_is_a_503_with_retry_after(cdp_env: CdpEnv) -> None:
    admin = make_principal(cdp_env.runtime, ["admin"])
    headers = {
        "Authorization": f"Bearer {admin.token}",
        "X-Purpose": "operations",
        "X-Request-ID": "outage-1",
    }
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        assert client.get("/v1/principals", headers=headers).status_code == 200
        with _outage(cdp_env):
            r = client.get("/v1/principals", headers=headers)
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "database_unavailable"
            assert r.headers["Retry-After"] == "5"
            assert r.headers["X-Request-ID"] == "outage-1"
            assert r.json()["error"]["request_id"] == "outage-1"
        assert client.get("/v1/principals", headers=headers).status_code == 200
