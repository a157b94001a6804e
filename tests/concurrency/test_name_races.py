"""Two creators of the same name at once: one gets the name, the other a conflict (409), never
an internal error. On PostgreSQL both can pass the "is the name free?" check before either
inserts; the unique index then refuses the second insert."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cdp.access.principals import create as create_principal
from cdp.exports.destinations import DestinationSpec, create_destination
from cdp.ingest.sources import create_source
from tests.concurrency.races import race
from tests.conftest import CdpEnv


@pytest.mark.parametrize("kind", ["principal", "source", "destination"])
def test_a_name_taken_at_the_same_moment_is_a_conflict(cdp_env: CdpEnv, kind: str) -> None:
    rt = cdp_env.runtime
    if rt.data_engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers (BEGIN IMMEDIATE): the checks cannot interleave")
    creators: dict[str, tuple[str, Callable[[], Any]]] = {
        "principal": (
            "principals",
            lambda: create_principal(runtime=rt, name="alice.race", roles=["support"]),
        ),
        "source": ("sources", lambda: create_source(runtime=rt, name="web-race")),
        "destination": (
            "export_destinations",
            lambda: create_destination(
                runtime=rt,
                spec=DestinationSpec(
                    name="crm-race", kind="csv", purpose="email_marketing", fields=("email",)
                ),
                created_by="test",
            ),
        ),
    }
    table, create = creators[kind]

    def name_checked(statement: str) -> bool:  # after the "is the name free?" check
        return statement.upper().startswith("SELECT") and table in statement

    assert race(rt, name_checked, [create, create], wait=10) == ["conflict", "ok"]
