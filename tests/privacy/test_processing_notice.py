"""The access package carries the art. 15(1) information beside the person's data (its
``processing`` section), generated from cdp's configuration: purposes with the person's state,
categories held, retention, sources, profiling, rights and the complaint right. And the two
small faults of the package: the signup date and the custom traits as an object."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import markupsafe
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from cdp.cli import app
from cdp.consent.purposes import PURPOSES
from cdp.crypto.normalize import IdentityKind
from cdp.db.models import Identity
from cdp.privacy import access_package
from cdp.privacy.registry import ENTRIES
from cdp.privacy.requests import RequestType
from tests.audit.factories import make_principal
from tests.conftest import CdpEnv
from tests.ingest.helpers import CUSTOMER_HEADER, customer, order, write_csv, write_jsonl

runner = CliRunner()
AUTHORITY = "Berliner Beauftragte für Datenschutz, https://www.datenschutz-berlin.de"
CONTACT = "privacy@shop.example, Shop GmbH, Berlin"


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _package(
    env: CdpEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, Any], str]:
    monkeypatch.setenv("CDP_PRIVACY_CONTACT", CONTACT)
    monkeypatch.setenv("CDP_SUPERVISORY_AUTHORITY", AUTHORITY)
    monkeypatch.setenv("CDP_RETENTION_INACTIVE_DAYS", "500")
    rt = env.reopen()
    header = [*CUSTOMER_HEADER, "favourite_colour"]
    rows = [
        customer(1, created_at="2021-06-07T08:00:00Z", favourite_colour="teal"),
        customer(2, created_at="2022-01-01T00:00:00Z", favourite_colour="mauve"),
    ]
    _ok(["ingest", "customers", str(write_csv(tmp_path / "crm-export.csv", rows, header))])
    orders = [order(1, "C00001"), order(2, "C00002", order_id="O999999")]
    _ok(["ingest", "orders", str(write_jsonl(tmp_path / "shop-orders.jsonl", orders))])
    dpo = ["--token", make_principal(rt, ["dpo"]).token, "--purpose", "privacy_request"]
    _ok(["consent", "grant", _subject(env), "email_marketing", "--source", "signup-form", *dpo])
    made = _ok(["privacy", "request", "access", "--email", "person1@example.com", *dpo])
    match = re.search(r"pr_[0-9a-f]{24}", made)
    assert match is not None
    for step in ("verify", "run"):
        _ok(["privacy", step, match.group(0), *dpo])
    out, html = tmp_path / "p.json", tmp_path / "p.html"
    _ok(["privacy", "package", match.group(0), "-o", str(out), "--html", str(html), *dpo])
    return json.loads(out.read_text()), html.read_text()


def _subject(env: CdpEnv) -> str:
    tok = env.runtime.tokenizer.token(IdentityKind.CUSTOMER_ID, "C00001").value
    with env.runtime.data_engine.connect() as conn:
        return str(
            conn.execute(
                sa.select(Identity.subject_id).where(Identity.token == tok)  # type: ignore[call-overload]
            ).scalar_one()
        )


def test_the_package_states_the_processing_from_the_configuration(
    cdp_env: CdpEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package, _ = _package(cdp_env, tmp_path, monkeypatch)
    access_package.validate(package)
    proc = package["processing"]

    # (a) purposes, with the person's state for each, as configured
    assert [p["purpose"] for p in proc["purposes"]] == list(PURPOSES)
    for p in proc["purposes"]:
        conf = PURPOSES[p["purpose"]]
        assert p["description"] == conf.description
        assert p["lawful_basis"] == conf.basis.value
        assert p["retention_days"] == conf.retention.days
        assert p["objection_withdraws"] is conf.marketing
        assert p["withdrawal_stops_it"] is conf.withdrawable
    by_name = {p["purpose"]: p for p in proc["purposes"]}
    assert (by_name["email_marketing"]["status"], by_name["email_marketing"]["is_default"]) == (
        "granted",
        False,
    )
    assert (by_name["sms_marketing"]["status"], by_name["sms_marketing"]["is_default"]) == (
        "withdrawn",
        True,
    )

    # categories held: the vault fields present, by category
    cats = {c["category"]: c for c in proc["categories"]}
    assert cats["contact"]["fields"] == ["email", "phone"]
    assert "custom_traits" in cats["custom"]["fields"]
    assert cats["behaviour"]["fields"] == ["orders"]  # no event was recorded

    # (d) retention: the windows of the tables they govern, the settings
    ret = proc["retention"]
    assert ret["inactive_days"] == 500
    assert ret["package_days"] == cdp_env.settings.privacy_package_days
    windows = {w["data"]: w["purposes"] for w in ret["windows"]}
    assert windows == {e.table: list(e.retention) for e in ENTRIES if e.retention}

    # (g) sources: the names recorded for the person's rows, the customer connector
    sources = {s["data"]: s for s in proc["sources"]}
    assert sources["orders"]["sources"] == ["file:shop-orders.jsonl"]
    assert sources["consent"]["sources"] == ["signup-form"]
    assert "events" not in sources
    assert "customer connector" in sources["personal_data"]["collected_from"]

    # (h) profiling: the trait tables, on the analytics basis, no legal effects
    prof = proc["profiling"]
    assert prof["lawful_basis_purpose"] == "analytics"
    assert prof["analytics_status"] == by_name["analytics"]["status"]
    assert prof["legal_effects"] is False
    assert {t["data"] for t in prof["traits"]} == {
        e.table for e in ENTRIES if e.section == "traits"
    }
    assert all(t["logic"] for t in prof["traits"])

    # (e) rights: every request type, with the ways to exercise it; (f) the complaint right
    assert {r["request_type"] for r in proc["rights"] if r["request_type"]} == {
        t.value for t in RequestType
    }
    assert proc["controller_contact"] == CONTACT
    assert proc["complaint"]["supervisory_authority"] == AUTHORITY

    # no one else's data
    text = json.dumps(package, ensure_ascii=False)
    for other in ("person2@example.com", "Given2", "mauve", "O999999", "2022-01-01"):
        assert other not in text

    # a package without the section does not validate
    bare = copy.deepcopy(package)
    del bare["processing"]
    with pytest.raises(jsonschema.ValidationError, match="'processing' is a required property"):
        access_package.validate(bare)


def test_custom_traits_are_an_object_and_the_html_says_it_all(
    cdp_env: CdpEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package, page = _package(cdp_env, tmp_path, monkeypatch)
    assert package["personal_data"]["custom_traits"] == {"favourite_colour": "teal"}
    stringly = copy.deepcopy(package)
    stringly["personal_data"]["custom_traits"] = json.dumps({"favourite_colour": "teal"})
    with pytest.raises(jsonschema.ValidationError):
        access_package.validate(stringly)

    # the signup date at the source, not the day cdp ingested the record
    assert "Customer since 2021-06-07" in page
    assert "How we use your data" in page
    for p in PURPOSES.values():
        assert str(markupsafe.escape(p.description)) in page
    assert AUTHORITY in page and CONTACT in page
    assert "cdp privacy request" not in page  # the person is told whom to ask, not our CLI
    assert "favourite colour" in page and "teal" in page
    for other in ("person2@example.com", "Given2", "mauve", "O999999"):
        assert other not in page


def test_a_package_produced_before_the_processing_section_still_renders(
    cdp_env: CdpEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package stored by the previous release (format version 1: no ``processing``, custom
    traits as one JSON text) stays downloadable for ``CDP_PRIVACY_PACKAGE_DAYS`` after an
    upgrade: its HTML summary renders what it holds instead of failing."""
    package, _ = _package(cdp_env, tmp_path, monkeypatch)
    assert package["version"] == access_package.VERSION == 2
    old = copy.deepcopy(package)
    old["version"] = 1
    del old["processing"]
    old["personal_data"]["custom_traits"] = json.dumps({"favourite_colour": "teal"})
    page = access_package.render_html(old)
    assert "How we use your data" not in page
    assert "custom traits" in page and "favourite_colour" in page
    assert "Customer since 2021-06-07" in page
