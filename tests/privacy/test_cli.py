"""``cdp privacy ...`` and ``cdp retention run`` end to end through the command line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import sqlalchemy as sa
from typer.testing import CliRunner

from cdp.audit.writer import LOG
from cdp.cli import app
from cdp.errors import InvalidInputError
from cdp.privacy import access_package, requests
from tests.audit.factories import make_principal
from tests.conftest import CdpEnv
from tests.factories import make_subject

runner = CliRunner()


def test_dpo_serves_an_access_request_from_the_cli(cdp_env: CdpEnv, tmp_path: Path) -> None:
    rt = cdp_env.runtime
    make_subject(rt, pii={"email": "cli@example.org"}, identities={"email": "cli@example.org"})
    token = make_principal(rt, ["dpo"]).token
    auth = ["--token", token, "--purpose", "privacy_request"]
    made = runner.invoke(app, ["privacy", "request", "access", "--email", "cli@example.org", *auth])
    assert made.exit_code == 0, made.output
    match = re.search(r"pr_[0-9a-f]{24}", made.output)
    assert match is not None
    rid = match.group(0)
    for step in (["verify", rid], ["run", rid]):
        result = runner.invoke(app, ["privacy", *step, *auth])
        assert result.exit_code == 0, result.output
    out, html = tmp_path / "p.json", tmp_path / "p.html"
    result = runner.invoke(
        app, ["privacy", "package", rid, "-o", str(out), "--html", str(html), *auth]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    access_package.validate(data)
    assert data["personal_data"] == {"email": "cli@example.org"}
    assert "cli@example.org" in html.read_text()
    assert out.stat().st_mode & 0o077 == 0
    listed = runner.invoke(app, ["privacy", "list", "--status", "completed", *auth])
    assert rid in listed.output
    assert requests.get(runtime=rt, request_id=rid).status == "completed"


def test_retention_dry_run_from_the_cli_changes_nothing(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    make_subject(rt)
    admin = make_principal(rt, ["admin"]).token
    result = runner.invoke(
        app, ["retention", "run", "--dry-run", "--token", admin, "--purpose", "operations"]
    )
    assert result.exit_code == 0, result.output
    assert "would remove" in result.output and "inactive subjects" in result.output
    dpo = make_principal(rt, ["dpo"]).token
    refused = runner.invoke(
        app, ["retention", "run", "--token", dpo, "--purpose", "privacy_request"]
    )
    assert refused.exit_code != 0


def test_filing_from_the_cli_audits_the_identity_lookup(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt, identities={"email": "clilook@example.org"})
    token = make_principal(rt, ["dpo"]).token
    auth = ["--token", token, "--purpose", "privacy_request"]
    made = runner.invoke(
        app, ["privacy", "request", "erasure", "--email", "clilook@example.org", *auth]
    )
    assert made.exit_code == 0, made.output
    with rt.data_engine.connect() as conn:
        rows = conn.execute(sa.select(LOG).order_by(LOG.c.seq)).all()
    assert [(r.action, r.resource, json.loads(r.subject_ids)) for r in rows] == [
        ("lookup:email", "profile", [sid])
    ]


def test_filing_names_exactly_one_identity_and_an_empty_option_is_not_one(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    make_subject(rt, pii={"email": "one@example.org"}, identities={"email": "one@example.org"})
    auth = ["--token", make_principal(rt, ["dpo"]).token, "--purpose", "privacy_request"]
    request = ["privacy", "request", "access"]
    # an empty --phone names nobody, so the email alone is the identity
    made = runner.invoke(app, [*request, "--email", "one@example.org", "--phone", "", *auth])
    assert made.exit_code == 0, made.output
    for given in ([], ["--email", "one@example.org", "--customer-id", "c-1"], ["--email", ""]):
        refused = runner.invoke(app, [*request, *given, *auth])
        assert isinstance(refused.exception, InvalidInputError)
        assert "exactly one of --email, --phone, --customer-id" in str(refused.exception)
