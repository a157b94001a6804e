"""The access package names the segments the person was put in: the segment's name and
description, the version of its rule and when it was computed, not internal ids only."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from cdp.cli import app
from cdp.privacy import access_package
from tests.audit.factories import make_principal
from tests.conftest import CdpEnv
from tests.exports.conftest import EVERYONE
from tests.factories import make_subject

runner = CliRunner()


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_segment_memberships_carry_the_segments_name_version_and_time(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    rt = cdp_env.runtime
    email = "seg@example.org"
    sid = make_subject(rt, pii={"email": email}, identities={"email": email})
    rule = json.dumps(EVERYONE)
    _ok(["segments", "create", "all_shoppers", "--rule", rule, "--description", "Every shopper"])
    _ok(["segments", "compute", "all_shoppers"])
    also_everyone = json.dumps({"not": {"trait": {"name": "orders", "op": "lt", "value": -1}}})
    _ok(["segments", "update", "all_shoppers", "--rule", also_everyone])  # version 2
    _ok(["segments", "compute", "all_shoppers"])

    auth = ["--token", make_principal(rt, ["dpo"]).token, "--purpose", "privacy_request"]
    made = _ok(["privacy", "request", "access", "--email", email, *auth])
    match = re.search(r"pr_[0-9a-f]{24}", made)
    assert match is not None
    rid = match.group(0)
    for step in (["verify", rid], ["run", rid]):
        _ok(["privacy", *step, *auth])
    out, html = tmp_path / "p.json", tmp_path / "p.html"
    _ok(["privacy", "package", rid, "-o", str(out), "--html", str(html), *auth])
    package = json.loads(out.read_text())
    access_package.validate(package)

    (section,) = [s for s in package["segments"] if s["table"] == "segment_snapshot_members"]
    rows = section["rows"]
    assert [(r["segment"], r["segment_version"], r["segment_description"]) for r in rows] == [
        ("all_shoppers", 1, "Every shopper"),
        ("all_shoppers", 2, "Every shopper"),
    ]
    assert all(r["subject_id"] == sid for r in rows)
    assert rows[0]["computed_at"] <= rows[1]["computed_at"]
    page = html.read_text()
    assert "all_shoppers (version 1)" in page and "all_shoppers (version 2)" in page

    # a package whose snapshot rows lack the segment's name does not validate
    bare = json.loads(out.read_text())
    (bare_section,) = [s for s in bare["segments"] if s["table"] == "segment_snapshot_members"]
    for row in bare_section["rows"]:
        del row["segment"]
    with pytest.raises(jsonschema.ValidationError, match="'segment' is a required property"):
        access_package.validate(bare)
