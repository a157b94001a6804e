"""Compliance reports: content per kind, formats, HTML chart, access rules, recorded reads."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cdp.api.app import create_app
from cdp.audit import activity_reports, anomaly_report, processing_report
from cdp.audit.render import csv_cell, render
from cdp.audit.service import record_access
from cdp.audit.writer import LOG
from cdp.cli import app
from cdp.clock import FrozenClock
from cdp.exports.destinations import DestinationSpec, create_destination
from tests.audit.factories import make_ctx, make_principal
from tests.conftest import CdpEnv

T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)
SID = "ab" * 16
OTHER = "cd" * 16


def _seed(env: CdpEnv) -> None:
    rt = env.runtime
    clock = FrozenClock(T0)
    support = make_ctx(["support"], purpose="support", name="sam")
    analyst = make_ctx(
        ["analyst"], purpose="analytics", name="ana", principal_id="fedcba9876543210"
    )
    for day in range(3):
        for _ in range(day + 1):
            record_access(
                runtime=rt,
                ctx=support,
                action="read",
                resource="profile",
                outcome="allowed",
                subject_ids=[SID],
                fields=["email", "phone"],
                clock=clock,
            )
            clock.advance(minutes=1)
        clock.advance(days=1)
    record_access(
        runtime=rt,
        ctx=analyst,
        action="read",
        resource="pii:contact",
        outcome="denied",
        subject_ids=[SID],
        clock=clock,
    )
    record_access(
        runtime=rt,
        ctx=support,
        action="read",
        resource="profile",
        outcome="allowed",
        subject_ids=[OTHER],
        fields=["email"],
        clock=clock,
    )


def test_subject_access_report(cdp_env: CdpEnv) -> None:
    _seed(cdp_env)
    r = activity_reports.subject_access(
        runtime=cdp_env.runtime, subject_id=SID, since=T0, until=T0 + timedelta(days=10)
    )
    assert r.total == 7
    assert [n for _, n in r.per_day] == [1, 2, 3]  # the denied read on day 4 is not a read
    assert dict(r.counts["principal"]) == {"sam": 6, "ana": 1}
    assert dict(r.counts["field"]) == {"email": 6, "phone": 6}
    assert r.recipients == []  # no export included this subject
    md = render(r, "md")
    assert "sam" in md and "| 2026-03-02 | 2 |" in md and OTHER not in md


def test_principal_activity_and_csv(cdp_env: CdpEnv) -> None:
    _seed(cdp_env)
    r = activity_reports.principal_activity(
        runtime=cdp_env.runtime, principal="sam", since=T0, until=T0 + timedelta(days=10)
    )
    assert r.total == 7
    assert dict(r.counts["subjects"]) == {"distinct subjects": 2}
    rows = list(csv.DictReader(io.StringIO(render(r, "csv"))))
    assert len(rows) == 7 and rows[0]["principal"] == "sam" and rows[0]["fields"] == "email phone"


def test_denied_and_anomalies(cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    _seed(cdp_env)
    rt = cdp_env.runtime
    monkeypatch.setattr(anomaly_report, "BURST_THRESHOLD", 5)
    clock = FrozenClock(T0 + timedelta(days=5))
    bulk = make_ctx(["support"], purpose="support", name="bulk", principal_id="1111222233334444")
    for i in range(8):
        record_access(
            runtime=rt,
            ctx=bulk,
            action="read",
            resource="profile",
            outcome="allowed",
            subject_ids=[f"{i:032x}"],
            fields=["email"],
            clock=clock,
        )
        clock.advance(seconds=10)
    odd = make_ctx(["support"], purpose="marketing", name="odd", principal_id="5555666677778888")
    record_access(
        runtime=rt, ctx=odd, action="read", resource="profile", outcome="denied", clock=clock
    )
    r = anomaly_report.denied_anomalies(runtime=rt, since=T0, until=T0 + timedelta(days=10))
    assert [a.outcome for a in r.accesses] == ["denied", "denied"]
    kinds = {(a["kind"], a["principal"]) for a in r.anomalies}
    assert ("burst", "bulk") in kinds and ("burst", "sam") not in kinds
    assert ("unusual purpose", "role support") in kinds
    html = render(r, "html")
    assert "<svg" in html and "<script" not in html
    # the CSV carries the anomalies too (a DPO who chose CSV got the denials only)
    text = render(r, "csv")
    tail = text.split('"anomalies"\n', 1)[1]
    rows = list(csv.DictReader(io.StringIO(tail)))
    assert {(row["kind"], row["who"]) for row in rows} == kinds


def test_processing_summary(cdp_env: CdpEnv) -> None:
    r = processing_report.processing(runtime=cdp_env.runtime)
    by_purpose = {p["purpose"]: p for p in r.processing}
    support = {c["category"]: c["roles"] for c in by_purpose["support"]["categories"]}
    assert support == {"contact": "support"}
    assert "dpo" in {c["roles"] for c in by_purpose["privacy_request"]["categories"]}
    assert by_purpose["support"]["retention"]
    rows = list(csv.DictReader(io.StringIO(render(r, "csv"))))
    assert {"purpose": "support", "category": "contact"}.items() <= rows[
        [x["purpose"] for x in rows].index("support")
    ].items()


def test_processing_lists_export_grants_and_recipients(cdp_env: CdpEnv) -> None:
    """Art. 30(1)(d): the records of processing name the recipients, not only the readers. The
    marketer exports email for email_marketing and ad_audiences; the report said no role could
    read anything for those purposes and named no recipient."""
    rt = cdp_env.runtime
    for spec in (
        DestinationSpec("news-csv", "csv", "email_marketing", ["email", "first_name"]),
        DestinationSpec("meta-aud", "meta", "ad_audiences", ["email", "phone"]),
    ):
        create_destination(runtime=rt, spec=spec, created_by="admin")
    r = processing_report.processing(runtime=rt)
    by_purpose = {p["purpose"]: p for p in r.processing}
    email = by_purpose["email_marketing"]
    assert [(g["grant"], g["roles"]) for g in email["exports"]] == [
        ("exports run", "marketer"),
        ("exports create", "marketer"),
    ]
    assert [(d["name"], d["kind"], d["fields"], d["enabled"]) for d in email["recipients"]] == [
        ("news-csv", "csv", "email, first_name", "yes")
    ]
    ads = by_purpose["ad_audiences"]["recipients"]
    assert [(d["name"], d["fields"]) for d in ads] == [("meta-aud", "email, phone")]
    assert "Meta" in ads[0]["category"]
    assert by_purpose["sms_marketing"]["recipients"] == []
    assert by_purpose["support"]["exports"] == []
    md = render(r, "md")
    section = md.split("## Purpose `email_marketing`", 1)[1].split("## Purpose", 1)[0]
    assert "what exports send is below" in section and "| exports run |" in section
    assert "news-csv" in md and "meta-aud" in md
    section = md.split("## Purpose `sms_marketing`", 1)[1].split("## Purpose", 1)[0]
    assert "No destination serves this purpose" in section
    assert "outside the EU" in md and "outside the EU" in render(r, "html")
    html = render(r, "html")
    assert "news-csv" in html and "exports run" in html
    text = render(r, "csv")
    assert text.startswith('"purpose"')  # the first table is unchanged
    tail = text.split('"recipients"\n', 1)[1].split("\n\n", 1)[0]
    rows = list(csv.DictReader(io.StringIO(tail)))
    got = {(x["purpose"], x["destination"], x["fields"]) for x in rows}
    assert ("email_marketing", "news-csv", "email first_name") in got
    assert ("ad_audiences", "meta-aud", "email phone") in got
    assert ("sms_marketing", "", "") in got  # a purpose with no destination says so
    grants = text.split('"export_grants"\n', 1)[1].split("\n\n", 1)[0]
    got = {(x["purpose"], x["grant"], x["roles"]) for x in csv.DictReader(io.StringIO(grants))}
    assert ("email_marketing", "exports run", "marketer") in got


def test_csv_cells_defuse_formulas() -> None:
    assert csv_cell("=SUM(A1)") == '"\'=SUM(A1)"'
    assert csv_cell('a"b') == '"a""b"'


def test_report_api_is_for_auditor_and_dpo_and_is_recorded(cdp_env: CdpEnv) -> None:
    _seed(cdp_env)
    rt = cdp_env.runtime
    auditor = make_principal(rt, ["auditor"], name="audrey")
    dpo = make_principal(rt, ["dpo"])
    support = make_principal(rt, ["support"])
    with TestClient(create_app()) as client:
        url = (
            f"/v1/audit/reports/subject-access?subject_id={SID}"
            "&since=2026-03-01T00:00:00Z&until=2026-03-20T00:00:00Z"
        )
        r = client.get(
            url + "&format=html",
            headers={"Authorization": f"Bearer {auditor.token}", "X-Purpose": "audit"},
        )
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/html") and "<svg" in r.text
        r = client.get(
            "/v1/audit/reports/processing?format=csv",
            headers={"Authorization": f"Bearer {dpo.token}", "X-Purpose": "audit"},
        )
        assert r.status_code == 200 and r.text.startswith('"purpose"')
        r = client.get(
            url, headers={"Authorization": f"Bearer {support.token}", "X-Purpose": "support"}
        )
        assert r.status_code == 403
        r = client.get(
            "/v1/audit/reports/nonsense",
            headers={"Authorization": f"Bearer {auditor.token}", "X-Purpose": "audit"},
        )
        assert r.status_code == 422
    with rt.data_engine.connect() as conn:
        last = conn.execute(sa.select(LOG).order_by(LOG.c.seq.desc()).limit(3)).all()
    assert [(x.action, x.outcome) for x in reversed(last)] == [
        ("report:subject-access", "allowed"),
        ("report:processing", "allowed"),
        ("read", "denied"),
    ]
    assert last[2].principal_name == "audrey" and last[2].subject_ids == f'["{SID}"]'


def test_cli_report(cdp_env: CdpEnv, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _seed(cdp_env)
    auditor = make_principal(cdp_env.runtime, ["auditor"])
    out = tmp_path / "r.html"
    r = CliRunner().invoke(
        app,
        [
            "audit",
            "report",
            "principal-activity",
            "--principal",
            "sam",
            "--since",
            "2026-03-01",
            "--until",
            "2026-03-20",
            "--format",
            "html",
            "--out",
            str(out),
            "--token",
            auditor.token,
            "--purpose",
            "audit",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "Principal activity report" in out.read_text()
    r = CliRunner().invoke(app, ["audit", "report", "processing", "--token", auditor.token])
    assert r.exit_code != 0


@pytest.mark.parametrize(
    "query",
    [
        "denied-anomalies?until=0001-01-01T00:00:00Z",
        "denied-anomalies?until=0001-01-01T05:00:00%2B10:00",
        "principal-activity?principal=sam&since=0001-01-01T00:00:00%2B14:00",
        "denied-anomalies?since=2100-01-01T00:00:00Z&until=9999-12-31T00:00:00Z",
        "principal-activity?principal=x%60%0A%0A%3Cscript%3Ealert(1)%3C/script%3E",
        "principal-activity?principal=a%00b",
        # the processing report has no period, but its parameters are checked like the others'
        "processing?since=1800-01-01T00:00:00Z",
        "processing?since=2026-01-01T00:00:00",
    ],
)
def test_report_parameters_out_of_range_or_shape_are_422(cdp_env: CdpEnv, query: str) -> None:
    """Year-1 times overflowed (500); a principal filter is printed in the Markdown report,
    which has no escape, so it must be a principal name."""
    auditor = make_principal(cdp_env.runtime, ["auditor"])
    with TestClient(create_app()) as client:
        r = client.get(
            f"/v1/audit/reports/{query}",
            headers={"Authorization": f"Bearer {auditor.token}", "X-Purpose": "audit"},
        )
    assert r.status_code == 422, r.text
    assert "<script>" not in r.text
