"""The OpenAPI document declares, for every operation, who may call it (security scheme and
``x-cdp-permission``, read from the route's own authorisation dependency and the policy), the
error answers it can give in the one error body, and the constraints the server enforces.

The expectations here are found independently of :mod:`cdp.api.openapi_access`: the routes'
dependencies are walked for :data:`AUTHORIZE_MARKER` and ``require_source`` as the route audit
(``test_routes_authorised.py``) walks them, and the grants are asked of the policy engine.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from cdp.access.categories import PURPOSES
from cdp.access.engine import get_policy_engine, reset_policy_engine
from cdp.api.app import create_app
from cdp.api.auth import AUTHORIZE_MARKER
from cdp.api.source_auth import require_source
from cdp.settings import reset_settings
from tests.api.test_routes_authorised import PUBLIC_ROUTES, _calls, _flat_routes
from tests.audit.factories import make_principal
from tests.conftest import CdpEnv
from tests.factories import make_subject

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
SEGMENT_ROUTES = {"batch", "identify", "track", "page", "screen", "alias", "group"}
REPO_POLICIES = Path(__file__).resolve().parents[2] / "policies"


def _guards(app: FastAPI) -> dict[tuple[str, str], tuple[list[tuple[str, str]], bool]]:
    """(method, path) -> the route's (resource, action) checks and whether a source guards it."""
    found = {}
    for route in _flat_routes(app):
        original = getattr(route, "original_route", route)
        if not isinstance(original, APIRoute):
            continue
        calls = list(_calls(getattr(route, "dependant", None) or original.dependant))
        checks = [getattr(c, AUTHORIZE_MARKER) for c in calls if hasattr(c, AUTHORIZE_MARKER)]
        source = any(c is require_source for c in calls)
        for method in getattr(route, "methods", None) or ():
            found[(method, route.path)] = (checks, source)
    return found


def _grants(checks: list[tuple[str, str]]) -> list[dict[str, Any]]:
    engine = get_policy_engine()
    out = []
    for role in sorted(engine.roles):
        purposes = [
            p
            for p in PURPOSES
            if all(engine.decide([role], res, act, p).allowed for res, act in checks)
        ]
        if purposes:
            out.append({"role": role, "purposes": purposes})
    return out


def _operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def _errors_are_declared(operation: dict[str, Any], statuses: set[int], where: str) -> None:
    responses = operation["responses"]
    missing = {s for s in statuses if str(s) not in responses}
    assert not missing, f"{where} does not declare {sorted(missing)}"
    for key, response in responses.items():
        if key == "default" or int(key) >= 400:
            assert response["content"] == {"application/json": {"schema": ERROR_REF}}, where
            assert response["description"], where


def test_every_operation_declares_who_may_call_it_and_its_errors() -> None:
    app = create_app()
    schema = app.openapi()
    guards = _guards(app)
    schemes = schema["components"]["securitySchemes"]
    seen = {"public": 0, "policy": 0, "source": 0}
    for method, path, operation in _operations(schema):
        where = f"{method} {path}"
        checks, source = guards[(method, path)]
        declared = operation["x-cdp-permission"]
        statuses = {400, 413, 500, 504}
        if any(p["in"] == "path" for p in operation.get("parameters", [])):
            statuses.add(404)
        if checks:
            seen["policy"] += 1
            ((name, _),) = [next(iter(s.items())) for s in operation["security"]]
            assert schemes[name] == {**schemes[name], "type": "http", "scheme": "bearer"}
            (resource, action), *more = checks
            assert (declared["resource"], declared["action"]) == (resource, action), where
            assert declared.get("also", []) == [{"resource": r, "action": a} for r, a in more]
            assert declared["credential"] == "principal"
            assert declared["grants"] == _grants(checks), where
            assert f"`{action}` on `{resource}`" in operation["description"], where
            for grant in declared["grants"]:
                assert f"`{grant['role']}` for" in operation["description"], where
            purpose = [p for p in operation["parameters"] if p["name"] == "X-Purpose"]
            assert purpose and purpose[0]["required"], where
            assert purpose[0]["schema"]["enum"] == list(PURPOSES)
            statuses |= {401, 403, 422, 429, 503}
        elif source:
            seen["source"] += 1
            assert path.removeprefix("/v1/") in SEGMENT_ROUTES, where
            ((name, _),) = [next(iter(s.items())) for s in operation["security"]]
            assert schemes[name] == {**schemes[name], "type": "http", "scheme": "basic"}
            assert declared == {"credential": "source"}, where
            statuses |= {400, 401, 413, 429, 503}
        else:
            seen["public"] += 1
            assert (method, path) in PUBLIC_ROUTES, f"{where} is public but not allow-listed"
            assert operation["security"] == [], where
            assert declared == {"credential": "none"}, where
        _errors_are_declared(operation, statuses, where)
    assert seen["public"] == len(PUBLIC_ROUTES)
    assert seen["source"] == len(SEGMENT_ROUTES)
    assert seen["policy"] > 30
    metrics = schema["paths"]["/metrics"]["get"]["x-cdp-permission"]  # not public
    assert (metrics["resource"], metrics["action"]) == ("ops", "read")


def test_route_specific_errors_are_declared() -> None:
    paths = create_app().openapi()["paths"]
    assert "409" in paths["/v1/segments"]["post"]["responses"]
    assert "409" in paths["/v1/principals"]["post"]["responses"]
    assert {"404", "409"} <= set(paths["/v1/exports"]["post"]["responses"])
    assert "404" in paths["/v1/consent"]["post"]["responses"]
    assert "503" in paths["/readyz"]["get"]["responses"]
    assert "503" not in paths["/healthz"]["get"]["responses"]


def test_the_document_is_valid_openapi() -> None:
    """Against the OpenAPI 3.1 meta-schema (Schemathesis, a test dependency, ships it)."""
    schema = create_app().openapi()
    schemathesis.openapi.from_dict(schema).validate()
    broken = {**schema, "paths": {"/x": {"get": {"responses": {"200": 5}}}}}
    with pytest.raises(ValueError, match='is not of type "object"'):  # the validator does look
        schemathesis.openapi.from_dict(broken).validate()


def test_enforced_constraints_are_in_the_document(cdp_env: CdpEnv, client: TestClient) -> None:
    schema = client.app.openapi()  # type: ignore[attr-defined]
    metrics = schema["paths"]["/v1/metrics"]["get"]
    assert "`from` must be before `to`" in metrics["description"]
    params = {p["name"]: p for p in metrics["parameters"]}
    assert "before `to`" in params["from"]["description"]
    assert "after `from`" in params["to"]["description"]
    rule = schema["components"]["schemas"]["SegmentIn"]["properties"]["rule"]
    made = make_principal(cdp_env.runtime, ["marketer"])
    headers = {"Authorization": f"Bearer {made.token}", "X-Purpose": "marketing"}
    accepted = {"rfm_segment": ["champions"]}
    for refused in ({}, {"all": []}, {"any": [{}]}, {"rfm_segment": []}, {"a": 1, "b": 2}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(refused, rule)
        answer = client.post("/v1/segments", json={"name": "s", "rule": refused}, headers=headers)
        assert answer.status_code == 422, refused
    jsonschema.validate(accepted, rule)
    answer = client.post("/v1/segments", json={"name": "s", "rule": accepted}, headers=headers)
    assert answer.status_code == 201, answer.text
    kind = schema["components"]["schemas"]["PrincipalCreate"]["properties"]["kind"]
    assert kind["enum"] == ["person", "service"]


ROUTES = [
    ("GET", "/v1/segments"),
    ("GET", "/v1/metrics"),
    ("GET", "/v1/principals"),
    ("GET", "/v1/profiles/{subject_id}/traits"),
    ("GET", "/v1/privacy-requests"),
    ("GET", "/metrics"),
]


def test_the_declared_permission_is_what_authorises(
    cdp_env: CdpEnv, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDP_RATE_LIMIT_PRINCIPAL_PER_SECOND", "0")  # a 429 would hide the answer
    reset_settings()
    schema = client.app.openapi()  # type: ignore[attr-defined]
    subject = make_subject(cdp_env.runtime, {"email": "perm@example.com"})
    tokens = {r: make_principal(cdp_env.runtime, [r]).token for r in get_policy_engine().roles}
    for method, path in ROUTES:
        declared = schema["paths"][path][method.lower()]["x-cdp-permission"]
        granted = {g["role"]: g["purposes"] for g in declared["grants"]}
        assert granted, path
        url = path.replace("{subject_id}", subject)
        for role, token in tokens.items():
            for purpose in PURPOSES:
                headers = {"Authorization": f"Bearer {token}", "X-Purpose": purpose}
                status = client.request(method, url, headers=headers).status_code
                allowed = purpose in granted.get(role, [])
                assert (status != 403) is allowed, (path, role, purpose, status)


@pytest.fixture
def policy_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    target = tmp_path / "policies"
    shutil.copytree(REPO_POLICIES, target)
    monkeypatch.setenv("CDP_POLICY_DIR", str(target))
    monkeypatch.setenv("CDP_POLICY_RELOAD_SECONDS", "0.05")
    reset_settings()
    reset_policy_engine()
    yield target
    reset_policy_engine()
    reset_settings()


def test_the_document_follows_a_changed_policy(policy_dir: Path) -> None:
    app = create_app()
    before = app.openapi()["paths"]["/v1/metrics"]["get"]["x-cdp-permission"]["grants"]
    assert before == [{"role": "analyst", "purposes": ["analytics"]}]
    policy = policy_dir / "policy.csv"
    policy.write_text(policy.read_text() + "p, auditor, metrics, read, audit, allow\n")
    time.sleep(0.1)
    after = app.openapi()["paths"]["/v1/metrics"]["get"]["x-cdp-permission"]["grants"]
    assert after == [*before, {"role": "auditor", "purposes": ["audit"]}]
