"""Schema-driven fuzzing of the whole API (Schemathesis over ``create_app()``'s OpenAPI document).

Every operation is called with generated parameters and bodies, authenticated as a principal the
policy admits for it (role and purpose found by asking the policy engine about the route's
``authorize(...)`` markers) or, for the Segment routes, with a source's write key. Every built-in
check runs: no 5xx, status codes and bodies as documented (errors in the one error shape the
document declares as every operation's default), content types, headers, and the negative-data
checks. Examples are bounded so the suite stays fast (CI runs it on SQLite and PostgreSQL).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from cdp.access.categories import PURPOSES
from cdp.access.engine import get_policy_engine
from cdp.api.app import create_app
from cdp.api.auth import AUTHORIZE_MARKER
from cdp.ingest.sources import create_source
from cdp.settings import reset_settings
from tests.audit.factories import make_principal
from tests.conftest import CdpEnv
from tests.factories import make_subject

SEGMENT_PATHS = r"^/v1/(batch|identify|track|page|screen|alias|group)$"
# Segment's protocol answers 400 (one detail per message and field) for messages that break the
# Segment Spec's own rules (an identifier, a track's event, an alias's two ids, valid traits),
# which the document's JSON Schema does not encode: for those routes 400 is an expected answer to
# schema-valid data. Every other check, and every other route, keeps the defaults.
CONFIG = SchemathesisConfig.from_dict(
    {
        "operations": [
            {
                "include-path-regex": SEGMENT_PATHS,
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", "400", "401", "403", "404", "409", "429"]
                    }
                },
            }
        ]
    }
)
APP = create_app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP, config=CONFIG)
ROLES = ("admin", "dpo", "support", "analyst", "marketer", "auditor", "ingest")
MAX_EXAMPLES = 6


def _markers(route: APIRoute) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        marker = getattr(dep.call, AUTHORIZE_MARKER, None)
        if marker is not None:
            found.append(marker)
        stack.extend(dep.dependencies)
    return found


def _grant(markers: list[tuple[str, str]]) -> tuple[str, str] | None:
    """A (role, purpose) the policy allows every marker for."""
    engine = get_policy_engine()
    for role in ROLES:
        for purpose in PURPOSES:
            if all(engine.decide((role,), r, a, purpose).allowed for r, a in markers):
                return role, purpose
    return None


@dataclass
class FuzzEnv:
    """Credentials for every operation of the app."""

    tokens: dict[str, str]
    write_key: str
    grants: dict[tuple[str, str], tuple[str, str] | None]

    def headers(self, method: str, path: str) -> dict[str, str]:
        if path.startswith("/v1/") and (method, path) not in self.grants:
            basic = base64.b64encode(f"{self.write_key}:".encode()).decode()
            return {"Authorization": f"Basic {basic}"}
        grant = self.grants.get((method, path))
        if grant is None:
            return {}
        role, purpose = grant
        return {"Authorization": f"Bearer {self.tokens[role]}", "X-Purpose": purpose}


@pytest.fixture
def fuzz_env(cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch) -> Iterator[FuzzEnv]:
    monkeypatch.setenv("CDP_RATE_LIMIT_PRINCIPAL_PER_SECOND", "0")
    monkeypatch.setenv("CDP_RATE_LIMIT_SOURCE_PER_SECOND", "0")
    reset_settings()
    rt = cdp_env.runtime
    tokens = {role: make_principal(rt, [role], name=f"fuzz-{role}").token for role in ROLES}
    make_subject(rt, {"email": "fuzz@example.com"}, identities={"email": "fuzz@example.com"})
    grants = {}
    for route in APP.routes:
        if isinstance(route, APIRoute):
            markers = _markers(route)
            for method in route.methods:
                if markers:
                    grants[(method, route.path)] = _grant(markers)
    yield FuzzEnv(tokens, create_source(runtime=rt, name="fuzz").write_key, grants)


def _fuzzed(func: Callable[..., Any]) -> Any:
    return settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )(func)


@schema.parametrize()
@_fuzzed
def test_api_conforms_to_its_schema(case: schemathesis.Case, fuzz_env: FuzzEnv) -> None:
    case.call_and_validate(headers=fuzz_env.headers(case.method.upper(), case.path))


def test_every_guarded_operation_has_an_admitted_role(fuzz_env: FuzzEnv) -> None:
    missing = [f"{m} {p}" for (m, p), grant in fuzz_env.grants.items() if grant is None]
    assert missing == []
