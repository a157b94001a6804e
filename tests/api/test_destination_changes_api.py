"""``PATCH /v1/destinations/{name}`` and ``POST /v1/destinations/{name}/disable|enable``, through
the real app: admin only, checked like a creation, kind and purpose fixed, and a disabled
destination's export refused with 409 ``destination_disabled``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from cdp.access.principals import create as create_principal
from cdp.api.app import create_app
from cdp.clock import FrozenClock
from cdp.segments.service import create_segment
from cdp.segments.views import SegmentIn
from tests.conftest import CdpEnv
from tests.exports.conftest import EVERYONE, T0, World

Api = tuple[TestClient, dict[str, str], dict[str, str]]
HOOK = {
    "name": "hook",
    "kind": "webhook",
    "purpose": "email_marketing",
    "fields": ["email"],
    "url": "https://hooks.example.com/in",
}


@pytest.fixture
def world(cdp_env: CdpEnv) -> World:
    clock = FrozenClock(T0)
    create_segment(
        runtime=cdp_env.runtime,
        data=SegmentIn(name="everyone", rule=EVERYONE),
        actor="test",
        clock=clock,
    )
    return World(cdp_env.runtime, clock)


@pytest.fixture
def api(world: World) -> Iterator[Api]:
    """The app, an admin's headers and a marketer's."""
    admin = create_principal(runtime=world.rt, name="root", roles=["admin"]).token
    marketer = create_principal(runtime=world.rt, name="mk", roles=["marketer"]).token
    with TestClient(create_app()) as client:
        yield (
            client,
            {"Authorization": f"Bearer {admin}", "X-Purpose": "operations"},
            {"Authorization": f"Bearer {marketer}", "X-Purpose": "email_marketing"},
        )


def test_patch_changes_a_destination(
    api: tuple[TestClient, dict[str, str], dict[str, str]],
) -> None:
    client, admin, marketer = api
    assert client.post("/v1/destinations", json=HOOK, headers=admin).status_code == 201
    r = client.patch(
        "/v1/destinations/hook",
        json={"url": "https://new.example.com/in", "fields": ["first_name", "email"]},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["changed"] == ["fields", "url"] and body["resend"] is True
    assert body["destination"]["url"] == "https://new.example.com/in"
    assert body["destination"]["fields"] == ["email", "first_name"]
    shown = client.get("/v1/destinations/hook", headers=admin).json()
    assert shown == body["destination"] and shown["enabled"] is True
    r = client.patch("/v1/destinations/hook", json={}, headers=admin)  # nothing: no change
    assert r.status_code == 200 and r.json()["changed"] == []
    # marketers read destinations; they do not change them
    r = client.patch("/v1/destinations/hook", json={"min_audience": 1}, headers=marketer)
    assert r.status_code == 403
    assert client.patch("/v1/destinations/nope", json={}, headers=admin).status_code == 404


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"kind": "csv"}, "kind"),
        ({"purpose": "sms_marketing"}, "purpose"),
        ({"url": "https://169.254.169.254/latest"}, "url"),
        ({"url": "https://0x7f000001:8443/x"}, "url"),
        ({"fields": ["password"]}, "fields"),
        ({"min_audience": 0}, "min_audience"),
        ({"max_attempts": 21}, "max_attempts"),
        ({"enabled": False}, "unknown field"),  # switching off has its own route
        ({"name": "renamed"}, "unknown field"),  # names are fixed (and unknown keys unnamed)
    ],
)
def test_patch_refuses_what_create_refuses_and_kind_or_purpose(
    api: Api, body: dict[str, object], loc: str
) -> None:
    client, admin, _ = api
    assert client.post("/v1/destinations", json=HOOK, headers=admin).status_code == 201
    before = client.get("/v1/destinations/hook", headers=admin).json()
    r = client.patch("/v1/destinations/hook", json=body, headers=admin)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert any(loc in str(d["loc"]) for d in error["details"]), error
    if loc in ("kind", "purpose"):
        assert "create a new destination" in error["message"]
    assert "169.254" not in r.text and "0x7f" not in r.text  # never echoed
    assert client.get("/v1/destinations/hook", headers=admin).json() == before


def test_disable_and_enable(world: World, api: Api) -> None:
    client, admin, marketer = api
    world.person({"email": "x@example.com"})
    mail = {"name": "mail", "kind": "csv", "purpose": "email_marketing", "fields": ["email"]}
    assert client.post("/v1/destinations", json=mail | {"min_audience": 1}, headers=admin)
    assert client.post("/v1/destinations/mail/disable", headers=marketer).status_code == 403
    r = client.post("/v1/destinations/mail/disable", headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["changed"] == ["enabled"] and r.json()["destination"]["enabled"] is False
    again = client.post("/v1/destinations/mail/disable", headers=admin)
    assert again.status_code == 200 and again.json()["changed"] == []
    listed = client.get("/v1/destinations", headers=admin).json()["items"]
    assert [(d["name"], d["enabled"]) for d in listed] == [("mail", False)]

    export = {"segment": "everyone", "destination": "mail"}
    r = client.post("/v1/exports", json=export, headers=marketer)
    assert r.status_code == 409 and r.json()["error"]["code"] == "destination_disabled"
    assert client.get("/v1/exports", headers=marketer).json()["items"] == []

    r = client.post("/v1/destinations/mail/enable", headers=admin)
    assert r.status_code == 200 and r.json()["destination"]["enabled"] is True
    assert client.post("/v1/exports", json=export, headers=marketer).status_code == 201
    assert client.post("/v1/destinations/nope/enable", headers=admin).status_code == 404


def test_the_openapi_document_states_who_may_change_destinations(api: Api) -> None:
    client, _, _ = api
    paths = client.get("/openapi.json").json()["paths"]
    for path, method in (
        ("/v1/destinations/{name}", "patch"),
        ("/v1/destinations/{name}/disable", "post"),
        ("/v1/destinations/{name}/enable", "post"),
    ):
        permission = paths[path][method]["x-cdp-permission"]
        assert (permission["resource"], permission["action"]) == ("destinations", "write")
        assert "admin" in str(permission) and "marketer" not in str(permission)
