"""Destination validation, and the webhook signature as a property over arbitrary bodies."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdp.errors import ConflictError, InvalidInputError, NotFoundError
from cdp.exports.destinations import get_destination, list_destinations
from cdp.exports.webhook import signature_header, verify_signature
from tests.exports.conftest import World


@pytest.mark.parametrize(
    ("kind", "purpose", "fields", "extra"),
    [
        ("fax", "email_marketing", ["email"], {}),  # unknown kind
        ("csv", "analytics", ["email"], {}),  # not a consent purpose
        ("csv", "email_marketing", [], {}),  # no fields
        ("csv", "email_marketing", ["password"], {}),  # not a profile field
        ("meta", "ad_audiences", ["street"], {}),  # Meta does not use street
        ("google", "ad_audiences", ["city"], {}),  # Google does not use city
        ("csv", "email_marketing", ["email"], {"url": "https://x.example.com"}),  # url on a file
        ("csv", "email_marketing", ["email"], {"min_audience": 0}),
        (
            "webhook",
            "email_marketing",
            ["email"],
            {"url": "https://x.example.com", "batch_size": 0},
        ),
        ("meta", "ad_audiences", ["email", "postal_code"], {}),  # zip needs the country
        ("meta", "ad_audiences", ["state"], {}),  # so does the state
        ("google", "ad_audiences", ["email", "postal_code"], {}),
        ("webhook", "email_marketing", ["email"], {"url": "https://exa mple.com/"}),
        ("webhook", "email_marketing", ["email"], {"url": "https://example.com/a\tb"}),
        # link-local (cloud metadata) and unspecified addresses
        ("webhook", "email_marketing", ["email"], {"url": "https://169.254.169.254/latest"}),
        ("webhook", "email_marketing", ["email"], {"url": "https://[fe80::1]/x"}),
        ("webhook", "email_marketing", ["email"], {"url": "https://[::ffff:169.254.169.254]/x"}),
        ("webhook", "email_marketing", ["email"], {"url": "https://0.0.0.0/x"}),
        ("webhook", "email_marketing", ["email"], {"url": "http://[::]:8080/x"}),
        # numbers the system resolver reads as IPv4 addresses (inet_aton's legacy forms)
        ("webhook", "email_marketing", ["email"], {"url": "https://2852039166/x"}),
        ("webhook", "email_marketing", ["email"], {"url": "https://0xa9fea9fe/x"}),
        ("webhook", "email_marketing", ["email"], {"url": "https://0XA9FEA9FE/x"}),
        ("webhook", "email_marketing", ["email"], {"url": "https://169.254.43518/x"}),
        ("webhook", "email_marketing", ["email"], {"url": "https://0251.0376.169.254/x"}),
        ("webhook", "email_marketing", ["email"], {"url": "https://0/x"}),
        ("webhook", "email_marketing", ["email"], {"url": "https://0x7f000001:8443/x"}),
        ("webhook", "email_marketing", ["email"], {"url": "https://127.1/x"}),
        ("webhook", "email_marketing", ["email"], {"url": "https://169.254.169.254./x"}),
        ("webhook", "email_marketing", ["email"], {"url": "https://hooks.example.0x10/x"}),
        ("webhook", "email_marketing", ["email"], {"url": "http://127.0.0.1:18931:80/x"}),
        ("webhook", "email_marketing", ["email"], {"url": "http://127.0.0.1:99999/x"}),
        ("webhook", "email_marketing", ["email"], {"url": "https://example.com:0/x"}),
        ("webhook", "email_marketing", ["email"], {"url": "https://example.com:0x50/x"}),
        ("webhook", "email_marketing", ["email"], {"url": "https://[::1/x"}),
        ("webhook", "email_marketing", ["email"], {"url": "https://xn--a.example.com/x"}),
    ],
)
def test_invalid_destinations_are_refused(
    world: World, kind: str, purpose: str, fields: list[str], extra: dict[str, object]
) -> None:
    with pytest.raises(InvalidInputError):
        world.destination("d1", kind, purpose, fields, **extra)
    assert list_destinations(runtime=world.rt) == []


@pytest.mark.parametrize(
    ("url", "wording"),
    [
        ("https://hooks.example.com:99999/in", "port"),
        ("https://hooks.example.com:443:80/in", "port"),
        ("https://hooks.example.com:/in?token=s3cr3t:99999", None),  # empty port: the default
        ("https://[::1/in?token=s3cr3t", "malformed"),
    ],
)
def test_url_ports_are_checked_at_creation(world: World, url: str, wording: str | None) -> None:
    if wording is None:
        world.destination("d1", "webhook", "email_marketing", ["email"], url=url)
        return
    with pytest.raises(InvalidInputError) as refused:
        world.destination("d1", "webhook", "email_marketing", ["email"], url=url)
    assert refused.value.field == "url" and wording in str(refused.value)
    assert "hooks.example.com" not in str(refused.value) and "s3cr3t" not in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://2852039166/in?token=s3cr3t",
        "https://0xa9fea9fe/in",
        "https://0/in",
        "https://0x7f000001:8443/in",
        "https://10.1/in",
    ],
)
def test_a_host_written_as_a_legacy_ipv4_number_is_refused(world: World, url: str) -> None:
    """``https://2852039166/`` and ``https://0xa9fea9fe/`` are 169.254.169.254 to the system
    resolver, ``https://0/`` is 0.0.0.0: the check read them as host names and let them through.
    A host ending in a number must now be a dotted quad; the refusal does not echo the URL."""
    with pytest.raises(InvalidInputError) as refused:
        world.destination("d1", "webhook", "email_marketing", ["email"], url=url)
    message = str(refused.value)
    assert refused.value.field == "url" and "four decimal numbers" in message
    assert "s3cr3t" not in message and url.split("/")[2] not in message


@pytest.mark.parametrize(
    "url",
    [
        "https://203.0.113.5/in",
        "https://1password.example.com/in",
        "https://123.example.com/in",
        "https://hooks.example.com./in",
        "https://[2001:db8::1]/in",
        "http://127.0.0.1:8080/in",
        "http://[::1]:8080/in",
    ],
)
def test_dotted_quads_and_names_with_digits_are_still_accepted(world: World, url: str) -> None:
    made = world.destination("d1", "webhook", "email_marketing", ["email"], url=url)
    assert made.destination.url == url


def test_the_api_refuses_a_bad_url_port_with_a_422(world: World) -> None:
    from fastapi.testclient import TestClient

    from cdp.access.principals import create as create_principal
    from cdp.api.app import create_app

    admin = create_principal(runtime=world.rt, name="root", roles=["admin"], clock=world.clock)
    client = TestClient(create_app())
    headers = {"Authorization": f"Bearer {admin.token}", "X-Purpose": "operations"}
    spec = {"name": "hook", "kind": "webhook", "purpose": "email_marketing", "fields": ["email"]}
    for url in ("http://127.0.0.1:18931:80/x", "https://[::1/x?token=s3cr3t"):
        r = client.post("/v1/destinations", headers=headers, json={**spec, "url": url})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["details"][0]["loc"] == "url"
        assert "18931" not in r.text and "s3cr3t" not in r.text
    assert list_destinations(runtime=world.rt) == []


def test_names_are_unique_and_fields_ordered(world: World) -> None:
    created = world.destination("d1", "csv", "email_marketing", ["phone", "email", "email"])
    assert created.destination.fields == ("email", "phone")
    assert created.signing_secret is None
    with pytest.raises(ConflictError):
        world.destination("d1", "csv", "email_marketing", ["email"])
    assert get_destination(runtime=world.rt, name=created.destination.id).name == "d1"
    with pytest.raises(NotFoundError):
        get_destination(runtime=world.rt, name="nope")


@given(
    secret=st.text(min_size=1, max_size=40),
    body=st.binary(max_size=300),
    t=st.integers(min_value=1_000_000_000, max_value=4_000_000_000),
    flip=st.integers(min_value=0, max_value=299),
)
def test_signature_verifies_and_any_change_fails(
    secret: str, body: bytes, t: int, flip: int
) -> None:
    header = signature_header(secret, t, body)
    assert verify_signature(secret, header, body, now=t)
    if body:
        i = flip % len(body)
        changed = body[:i] + bytes([body[i] ^ 1]) + body[i + 1 :]
        assert not verify_signature(secret, header, changed, now=t)
    assert not verify_signature(secret, header.replace(f"t={t}", f"t={t + 1}"), body, now=t)


def test_postal_code_and_state_come_with_country(world: World) -> None:
    made = world.destination("m1", "meta", "ad_audiences", ["postal_code", "state", "country"])
    assert made.destination.fields == ("state", "postal_code", "country")
    assert world.destination("m2", "meta", "ad_audiences", ["email", "phone"]).destination


def test_a_webhook_secret_survives_rotate_rewrap_retire(world: World) -> None:
    """The secret lives in the data database, not the key store: ``cdp keys rewrap`` must move
    it too, and ``retire`` must refuse while one is still under the version (it was unreadable
    for good after a retire, and every delivery failed)."""
    from typer.testing import CliRunner

    from cdp.cli import app as cli_app
    from cdp.errors import ConflictError as Conflict
    from cdp.exports.secret_rotation import secrets_per_version
    from cdp.exports.signing_secrets import signing_secret

    made = world.destination(
        "hook", "webhook", "email_marketing", ["email"], url="https://hooks.example.com/in"
    )
    assert made.signing_secret is not None
    runner = CliRunner()
    assert runner.invoke(cli_app, ["keys", "rotate"]).exit_code == 0
    refused = runner.invoke(cli_app, ["keys", "retire", "1"])
    assert isinstance(refused.exception, Conflict)
    assert "1 webhook signing secret(s)" in str(refused.exception)
    assert secrets_per_version(world.rt) == {1: 1}

    done = runner.invoke(cli_app, ["keys", "rewrap"])
    assert done.exit_code == 0 and "1 webhook signing secrets" in done.stdout
    assert secrets_per_version(world.rt) == {2: 1}
    assert runner.invoke(cli_app, ["keys", "retire", "1"]).exit_code == 0
    world.rt.provider.reload()
    assert signing_secret(runtime=world.rt, destination=made.destination) == made.signing_secret
    status = runner.invoke(cli_app, ["keys", "status"])
    assert status.exit_code == 0 and "secrets" in status.stdout


def test_a_name_cannot_look_like_an_id_and_names_win_lookups(world: World) -> None:
    """A destination could be named like another's id; lookups matched name OR id without an
    order, so a command could reach either destination."""
    import sqlalchemy as sa

    from cdp.exports.models import Destination

    first = world.destination("mail", "csv", "email_marketing", ["email"]).destination
    with pytest.raises(InvalidInputError) as refused:
        world.destination(first.id, "csv", "email_marketing", ["email"])
    assert refused.value.field == "name"
    # a name an older release accepted: the name wins, the id still finds its own destination
    other = world.destination("other", "csv", "email_marketing", ["email"]).destination
    table = Destination.__table__  # type: ignore[attr-defined]
    with world.rt.data_engine.begin() as conn:
        conn.execute(sa.update(table).where(table.c.id == other.id).values(name=first.id))
    assert get_destination(runtime=world.rt, name=first.id).id == other.id
    assert get_destination(runtime=world.rt, name="mail").id == first.id
    assert get_destination(runtime=world.rt, name=other.id).id == other.id


def test_a_rewrap_on_use_never_brings_back_a_rotated_secret(world: World) -> None:
    """Using a secret wrapped under an older KEK re-wraps it; a rotation committed between the
    read and that write was overwritten with the old secret (receivers then refused every
    batch). The write now applies only if the stored secret is still the one read."""
    from cdp.exports import signing_secrets as dests
    from cdp.exports.signing_secrets import rotate_secret, signing_secret

    made = world.destination(
        "hook", "webhook", "email_marketing", ["email"], url="https://h.example.com/"
    )
    world.rt.provider.rotate()
    rotated: list[str] = []
    real = dests.unwrap_secret

    def unwrap_then_rotate(*args: object, **kw: object) -> str:
        secret = real(*args, **kw)  # type: ignore[arg-type]
        if not rotated:  # another process rotates the secret right after this read
            rotated.append(rotate_secret(runtime=world.rt, name="hook").secret)
        return secret

    dests.unwrap_secret = unwrap_then_rotate  # type: ignore[assignment]
    try:
        old = signing_secret(runtime=world.rt, destination=made.destination)
    finally:
        dests.unwrap_secret = real  # type: ignore[assignment]
    assert old == made.signing_secret and rotated and rotated[0] != old
    assert signing_secret(runtime=world.rt, destination=made.destination) == rotated[0]


def test_rotating_the_secret_of_a_file_destination_is_a_conflict(world: World) -> None:
    """The request is well formed; the destination's kind is what refuses it (409, not 422)."""
    from fastapi.testclient import TestClient

    from cdp.access.principals import create as create_principal
    from cdp.api.app import create_app

    world.destination("mail", "csv", "email_marketing", ["email"])
    admin = create_principal(runtime=world.rt, name="root", roles=["admin"]).token
    headers = {"Authorization": f"Bearer {admin}", "X-Purpose": "operations"}
    with TestClient(create_app()) as client:
        r = client.post("/v1/destinations/mail/rotate-secret", headers=headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"


def test_the_openapi_document_declares_the_values_a_destination_takes(world: World) -> None:
    """Schema-valid requests were answered 422 (any string was a valid kind, purpose or field);
    the document now lists the values, and each listed value is one the service accepts."""
    from cdp.api.app import create_app

    props = create_app().openapi()["components"]["schemas"]["DestinationIn"]["properties"]
    kinds, purposes = props["kind"]["enum"], props["purpose"]["enum"]
    fields = props["fields"]["items"]["enum"]
    assert set(kinds) == {"csv", "jsonl", "webhook", "meta", "google"}
    assert "email_marketing" in purposes and "analytics" not in purposes
    for i, purpose in enumerate(purposes):
        world.destination(f"p{i}", "csv", purpose, ["email"])
    world.destination("every-field", "csv", "email_marketing", fields)
