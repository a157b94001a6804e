"""The authorisation dependency reads the bearer token and ``X-Purpose`` from the raw headers:
the same answers FastAPI's ``HTTPBearer(auto_error=False)`` and ``Header`` gave, and the OpenAPI
document still declares both on every authorised operation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdp.api.app import create_app
from cdp.api.auth import BEARER_SCHEME, PURPOSE_HEADER, credentials


def _scope(*headers: tuple[bytes, bytes]) -> dict[str, object]:
    return {"type": "http", "headers": list(headers)}


@pytest.mark.parametrize(
    ("value", "token"),
    [
        (b"Bearer cdp_abc", "cdp_abc"),
        (b"bearer cdp_abc", "cdp_abc"),
        (b"BEARER   cdp_abc  ", "cdp_abc"),
        (b"Basic dXNlcjpwdw==", None),
        (b"Bearer", None),
        (b"Bearer   ", None),
        (b"", None),
        (b"cdp_abc", None),
    ],
)
def test_bearer_token(value: bytes, token: str | None) -> None:
    assert credentials(_scope((b"authorization", value))) == (token, None)


def test_purpose_and_token_together_first_of_each() -> None:
    scope = _scope(
        (b"x-purpose", b"support"),
        (b"authorization", b"Bearer one"),
        (b"authorization", b"Bearer two"),
        (b"x-purpose", b"analytics"),
    )
    assert credentials(scope) == ("one", "support")
    assert credentials(_scope()) == (None, None)


@given(st.binary(max_size=80))
def test_any_authorization_value_is_a_token_only_after_bearer(value: bytes) -> None:
    token, _ = credentials(_scope((b"authorization", value)))
    text = value.decode("latin-1")
    scheme, _, rest = text.partition(" ")
    expected = rest.strip() if scheme.lower() == "bearer" and rest.strip() else None
    assert token == expected


def test_openapi_declares_bearer_and_purpose_on_authorised_operations() -> None:
    schema = create_app().openapi()
    assert schema["components"]["securitySchemes"][BEARER_SCHEME]["scheme"] == "bearer"
    profile = schema["paths"]["/v1/profiles/{subject_id}"]["get"]
    assert profile["security"] == [{BEARER_SCHEME: []}]
    assert [p["name"] for p in profile["parameters"]][-1] == PURPOSE_HEADER
    assert "422" in profile["responses"]
    principals = schema["paths"]["/v1/principals"]["get"]  # no other parameter
    assert [p["name"] for p in principals["parameters"]] == [PURPOSE_HEADER]
    assert principals["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    health = schema["paths"]["/healthz"]["get"]  # public: neither
    assert health["security"] == []  # declared public
    assert PURPOSE_HEADER not in [p["name"] for p in health.get("parameters", [])]
