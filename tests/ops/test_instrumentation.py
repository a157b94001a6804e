"""The pipelines report to the metrics: file and HTTP ingestion, audit appends, export runs."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from cdp.api.app import create_app
from cdp.audit.service import record_access
from cdp.clock import FrozenClock
from cdp.exports.run import run_export
from cdp.ingest.pipeline import ingest_file
from cdp.ingest.sources import create_source
from cdp.segments.service import create_segment
from cdp.segments.views import SegmentIn
from tests.audit.factories import make_ctx
from tests.conftest import CdpEnv
from tests.exports.conftest import EVERYONE, T0, World


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_file_ingestion_counts_accepted_rejected_and_duplicates(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    labels = {"channel": "file", "kind": "customers"}
    outcomes = ("accepted", "rejected", "duplicate")
    before = {o: _value("cdp_ingest_records_total", outcome=o, **labels) for o in outcomes}
    rows = [{"customer_id": f"C{i}", "email": f"c{i}@example.com"} for i in range(3)]
    rows.append({"customer_id": "C9", "email": "not an email"})
    path = tmp_path / "customers.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = ingest_file(runtime=cdp_env.runtime, kind="customers", path=path)
    assert summary.rejected == 1
    after = {o: _value("cdp_ingest_records_total", outcome=o, **labels) for o in before}
    assert after["accepted"] - before["accepted"] == summary.inserted + summary.updated == 3
    assert after["rejected"] - before["rejected"] == 1
    assert after["duplicate"] - before["duplicate"] == summary.duplicates


def test_segment_ingestion_counts_messages(cdp_env: CdpEnv) -> None:
    labels = {"channel": "http", "kind": "segment", "outcome": "accepted"}
    before = _value("cdp_ingest_records_total", **labels)
    key = create_source(runtime=cdp_env.runtime, name="web").write_key
    auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
    with TestClient(create_app()) as client:
        msg = {"userId": "u1", "event": "Viewed", "messageId": "m-instrumented"}
        assert client.post("/v1/track", json=msg, headers=auth).status_code == 200
    assert _value("cdp_ingest_records_total", **labels) == before + 1


def test_an_order_completed_without_its_order_is_not_counted_rejected(cdp_env: CdpEnv) -> None:
    """Its event was stored (the 400 says so); only a message refused whole is rejected."""
    labels = {"channel": "http", "kind": "segment"}
    before = {
        o: _value("cdp_ingest_records_total", outcome=o, **labels) for o in ("accepted", "rejected")
    }
    key = create_source(runtime=cdp_env.runtime, name="web").write_key
    auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
    bad_order = {
        "type": "track", "userId": "u1", "event": "Order Completed", "messageId": "m-oc",
        "properties": {"order_id": "O-1", "currency": "USD"},  # no total, no revenue
    }  # fmt: skip
    refused = {"type": "track", "userId": "=u2", "event": "Viewed", "messageId": "m-bad"}
    with TestClient(create_app()) as client:
        r = client.post("/v1/batch", json={"batch": [bad_order, refused]}, headers=auth)
    assert r.status_code == 400, r.text
    after = {o: _value("cdp_ingest_records_total", outcome=o, **labels) for o in before}
    assert after["rejected"] - before["rejected"] == 1
    assert after["accepted"] - before["accepted"] >= 1  # the Order Completed event


def test_audit_appends_are_timed(cdp_env: CdpEnv) -> None:
    before = _value("cdp_audit_write_duration_seconds_count", outcome="ok")
    record_access(
        runtime=cdp_env.runtime,
        ctx=make_ctx(),
        action="read",
        resource="profile",
        outcome="allowed",
    )
    assert _value("cdp_audit_write_duration_seconds_count", outcome="ok") >= before + 1


def test_export_runs_are_counted_with_their_rows(cdp_env: CdpEnv) -> None:
    clock = FrozenClock(T0)
    rt = cdp_env.runtime
    create_segment(
        runtime=rt, data=SegmentIn(name="everyone", rule=EVERYONE), actor="t", clock=clock
    )
    world = World(rt, clock)
    for i in range(3):
        world.person({"email": f"x{i}@example.com"})
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    runs, rows = (
        _value("cdp_export_runs_total", outcome="succeeded"),
        _value("cdp_export_rows_total"),
    )
    clock.advance(minutes=1)
    run_export(
        runtime=rt,
        ctx=world.ctx("email_marketing"),
        segment="everyone",
        destination="mail",
        clock=clock,
    )
    assert _value("cdp_export_runs_total", outcome="succeeded") == runs + 1
    assert _value("cdp_export_rows_total") == rows + 3
