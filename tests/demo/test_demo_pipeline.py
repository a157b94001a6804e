"""``cdp demo`` walks the whole product on a small shop, on SQLite and PostgreSQL: each step's
result is checked in storage (not only in the output), and the terminal shows no personal data.
"""

from __future__ import annotations

import csv
import json
import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from cdp.access import principals
from cdp.audit.checkpoint import read_checkpoint
from cdp.audit.verify import verify_chain
from cdp.crypto.normalize import IdentityKind
from cdp.demo.pipeline import DemoContext, _ingest
from cdp.demo.steps_access import DEMO_ROLES
from cdp.demo.steps_exports import minimum_audience
from cdp.exports.outputs import export_dir
from cdp.ingest.pipeline import Summary
from cdp.segments import service as segments
from tests.conftest import CdpEnv

CUSTOMERS, ORDERS = 400, 2_400
SEGMENTS = ("win_back", "vip", "new_customer_onboarding", "high_value_at_risk")


def _run_demo(customers: int, orders: int, capfd: pytest.CaptureFixture[str]) -> str:
    from cdp.cli import app

    result = CliRunner().invoke(
        app, ["demo", "--customers", str(customers), "--orders", str(orders)]
    )
    captured = capfd.readouterr()
    text = result.output + captured.out + captured.err
    assert result.exit_code == 0, text[-3000:]
    assert "demo finished" in result.output
    return text


def _rows(env: CdpEnv, sql: str, **params: Any) -> list[Any]:
    with env.runtime.data_engine.connect() as conn:
        return list(conn.execute(sa.text(sql), params).all())


def _personal_values(path: Path, sample: int = 60) -> list[str]:
    """Emails, phones and names of the first customers of the shop file."""
    values: list[str] = []
    with path.open(newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            if i >= sample:
                break
            first, last = row["first_name"].strip(), row["last_name"].strip()
            values += [row["email"].strip(), row["phone"].strip()]
            digits = re.sub(r"\D", "", row["phone"])
            if len(digits) >= 8:
                values.append(digits)
            values += [f"{first} {last}", f"{last}{first}", f"{last} {first}"]
            values += [n for n in (first, last) if len(n) >= 4 or not n.isascii()]
    return [v for v in values if v.strip()]


def _assert_no_personal_data(text: str, values: list[str]) -> None:
    leaked = []
    for value in values:
        if value.isascii() and value.replace(" ", "").isalpha():
            if re.search(rf"\b{re.escape(value)}\b", text):
                leaked.append(len(value))
        elif value in text:
            leaked.append(len(value))
    assert not leaked, f"{len(leaked)} personal values appear in the demo output"


def test_demo_walks_the_whole_product(cdp_env: CdpEnv, capfd: pytest.CaptureFixture[str]) -> None:
    text = _run_demo(CUSTOMERS, ORDERS, capfd)
    rt = cdp_env.runtime
    work = cdp_env.home / "demo"

    # 1. traits and metrics
    assert _rows(cdp_env, "SELECT count(*) FROM subject_traits")[0][0] > 0
    assert _rows(cdp_env, "SELECT count(*) FROM clv_predictions")[0][0] > 0
    for label in ("repurchase rate", "AOV", "churn rate", "RFM segments:"):
        assert label in text

    # 2. principals: tokens in a private file, never on the terminal
    tokens_file = work / "tokens.json"
    assert stat.S_IMODE(tokens_file.stat().st_mode) == 0o600
    tokens = json.loads(tokens_file.read_text())["principals"]
    assert set(tokens) == set(DEMO_ROLES)
    for entry in tokens.values():
        assert entry["token"] not in text
    assert str(tokens_file) in text

    # 3. segments: the printed counts are the stored computations; the shop ends yesterday, so
    # each built-in audience has members whatever the day the demo runs
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    assert f"shop period: two years ending {yesterday}" in text
    for view in segments.list_segments(runtime=rt):
        if view.name in SEGMENTS:
            assert view.last_computation is not None
            assert f"{view.name}: {view.last_computation.member_count:,} members" in text
            assert view.last_computation.member_count > 0, view.name

    # 4. exports: each run either wrote files whose manifest adds up, or was refused
    runs = _rows(cdp_env, "SELECT id, status FROM export_runs ORDER BY started_at")
    assert len(runs) == 2
    assert {status for _, status in runs} <= {"succeeded", "refused"}
    succeeded = [export_id for export_id, status in runs if status == "succeeded"]
    assert succeeded, "at least one demo export must succeed on this shop"
    assert f"minimum audience {minimum_audience(CUSTOMERS)}" in text
    for export_id in succeeded:
        [manifest_path] = list(export_dir(rt).glob(f"*/{export_id}.manifest.json"))
        manifest = json.loads(manifest_path.read_text())
        counts = manifest["counts"]
        assert counts["members"] == (
            counts["excluded_consent"]
            + counts["excluded_restriction"]
            + counts["excluded_no_data"]
            + counts["excluded_consent_late"]
            + counts["excluded_restriction_late"]
            + counts["unchanged"]
            + counts["sent"]
            + counts["failed_delivery"]
        )
        assert counts["sent"] > 0
        [add] = [o for o in manifest["outputs"] if o["op"] == "add"]
        lines = Path(add["path"]).read_text().splitlines()
        assert len(lines) == 1 + counts["sent"] == 1 + add["rows"]
        assert str(manifest_path) in text and add["path"] in text
    refused = _rows(
        cdp_env,
        "SELECT segment, members, excluded_consent, excluded_restriction FROM export_runs "
        "WHERE status = 'refused'",
    )
    for segment, members, no_consent, restricted in refused:
        assert members - no_consent - restricted < minimum_audience(CUSTOMERS)
        assert re.search(
            rf"{segment} -> \S+: refused, audience below the minimum of \d+ \(members "
            rf"{members}, excluded for consent {no_consent}, excluded for restriction "
            rf"{restricted}, sent 0\)",
            text,
        )

    # 5. the support read is allowed, the analyst's denied, both recorded
    support = _rows(
        cdp_env,
        "SELECT fields FROM audit_log WHERE principal_name = 'demo-support' AND action = 'read' "
        "AND resource = 'profile' AND outcome = 'allowed'",
    )
    assert len(support) == 1 and "email" in json.loads(support[0][0])
    denied = _rows(
        cdp_env,
        "SELECT resource, purpose FROM audit_log WHERE principal_name = 'demo-analyst' "
        "AND outcome = 'denied'",
    )
    assert [tuple(r) for r in denied] == [("pii:contact", "analytics")]

    # 6. the erased subject is gone and cannot be found by its email
    [(status,)] = _rows(cdp_env, "SELECT status FROM privacy_requests WHERE type = 'erasure'")
    assert status == "completed"
    [(erased_ids,)] = _rows(
        cdp_env,
        "SELECT subject_ids FROM audit_log WHERE principal_name = 'demo-dpo' "
        "AND action = 'delete' AND resource = 'profile' AND outcome = 'allowed'",
    )
    [request_subject] = json.loads(erased_ids)
    assert not _rows(cdp_env, "SELECT id FROM subjects WHERE id = :s", s=request_subject)
    assert not _rows(cdp_env, "SELECT 1 FROM pii_records WHERE subject_id = :s", s=request_subject)
    filed = re.search(r"filed for the customer in row (\d+)", text)
    assert filed is not None
    erased_row = int(filed.group(1))
    with (work / "customers.csv").open(newline="", encoding="utf-8") as fh:
        email = list(csv.DictReader(fh))[erased_row - 1]["email"]
    tokens_of_email = [t.value for t in rt.tokenizer.lookup_tokens(IdentityKind.EMAIL, email)]
    query = sa.text("SELECT subject_id FROM identities WHERE token IN :t").bindparams(
        sa.bindparam("t", expanding=True)
    )
    with rt.data_engine.connect() as conn:
        still = conn.execute(query, {"t": tokens_of_email}).all()
    assert still == []
    assert "after the erasure: 0 profile(s) found" in text

    # 7. audit: chain verifies, the checkpoint is signed, the reports are written
    assert verify_chain(runtime=rt).ok
    checkpoint = work / "audit-checkpoint.json"
    assert stat.S_IMODE(checkpoint.stat().st_mode) == 0o600
    assert read_checkpoint(runtime=rt, path=checkpoint).seq > 0
    for name in ("subject-access.html", "records-of-processing.html"):
        report = work / "reports" / name
        assert report.stat().st_size > 0
        assert str(report) in text

    # 8. every step printed its duration and a line in the summary table
    for step in ("traits", "principals", "segments", "exports", "reads", "erasure", "audit"):
        assert re.search(rf"\[{step}\] done in \d+\.\d+s", text)

    _assert_no_personal_data(text, _personal_values(work / "customers.csv"))


def test_demo_runs_again_on_the_same_home(
    cdp_env: CdpEnv, capfd: pytest.CaptureFixture[str]
) -> None:
    first = _run_demo(200, 1_200, capfd)
    second = _run_demo(200, 1_200, capfd)
    assert "created demo-admin" in first
    assert re.search(r"reused demo-admin, demo-marketer, .*demo-auditor", second)
    assert "reused demo-email-csv" in second and "reused demo-meta-audience" in second
    principals = _rows(cdp_env, "SELECT count(*) FROM principals")[0][0]
    destinations = _rows(cdp_env, "SELECT count(*) FROM export_destinations")[0][0]
    assert (principals, destinations) == (len(DEMO_ROLES), 2)
    erasures = _rows(cdp_env, "SELECT status FROM privacy_requests WHERE type = 'erasure'")
    assert [s for (s,) in erasures] == ["completed", "completed"]
    erased = _rows(
        cdp_env,
        "SELECT subject_ids FROM audit_log WHERE principal_name = 'demo-dpo' "
        "AND action = 'delete' AND resource = 'profile'",
    )
    assert len({r[0] for r in erased}) == 2, "the second run erases another customer"
    assert verify_chain(runtime=cdp_env.runtime).ok
    _assert_no_personal_data(
        first + second, _personal_values(cdp_env.home / "demo" / "customers.csv")
    )


def test_a_lost_tokens_file_gets_new_principals(
    cdp_env: CdpEnv, capfd: pytest.CaptureFixture[str]
) -> None:
    _run_demo(120, 600, capfd)
    (cdp_env.home / "demo" / "tokens.json").unlink()
    again = _run_demo(120, 600, capfd)
    assert re.search(r"created demo-admin-2, .*demo-auditor-2 \(new names", again)
    tokens = json.loads((cdp_env.home / "demo" / "tokens.json").read_text())["principals"]
    assert tokens["dpo"]["name"] == "demo-dpo-2"


def test_a_revoked_demo_token_is_named_as_the_cause_of_a_new_principal(
    cdp_env: CdpEnv, capfd: pytest.CaptureFixture[str]
) -> None:
    """A re-run after someone revoked a demo principal says which one and why it made another
    (it said the tokens were not in the file, which was not the cause)."""
    _run_demo(120, 600, capfd)
    principals.revoke(runtime=cdp_env.runtime, name="demo-marketer")
    again = _run_demo(120, 600, capfd)
    assert "created demo-marketer-2 (marketer: demo-marketer was revoked)" in again
    assert "not in the file" not in again


def test_the_ingest_step_line_counts_expired_records(tmp_path: Path) -> None:
    """The demo's table adds up: records past every retention window on arrival (the shop's
    oldest hours, for events) are neither inserted nor rejected, so the line names them."""

    def ingest(kind: str, path: Path, expected: int | None) -> Summary:
        return Summary(kind, read=120, inserted=117, expired=3)

    ctx = DemoContext(out_dir=tmp_path, ingest=ingest)
    ctx.results["shop"] = SimpleNamespace(events=tmp_path / "events.jsonl", event_count=120)
    _ingest("events")(ctx)
    assert ctx.done["ingest-events"].endswith("rejected 0, expired 3")
    ctx.results["shop"] = SimpleNamespace(orders=tmp_path / "orders.jsonl", order_count=120)
    ctx.ingest = lambda kind, path, expected: Summary(kind, read=120, inserted=120)
    _ingest("orders")(ctx)
    assert ctx.done["ingest-orders"].endswith("rejected 0")  # nothing expired: not named
