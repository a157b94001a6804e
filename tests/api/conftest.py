"""Fixtures of the Segment-compatible routes' tests: the real app and a real source."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from cdp.api.app import create_app
from cdp.ingest.sources import create_source
from tests.conftest import CdpEnv


@pytest.fixture
def client(cdp_env: CdpEnv) -> Iterator[TestClient]:
    """The real app; a server error is answered (500), not raised into the test."""
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def key(cdp_env: CdpEnv) -> str:
    """The write key of a new source ``web`` (the HTTP Basic user name)."""
    return create_source(runtime=cdp_env.runtime, name="web").write_key
