"""Records past every retention window when they arrive: behaviour events older than the longest
window of the purposes that retain them (``analytics``, ``personalization``: 730 days) are not
stored, and orders older than the support window (1095 days) are stored without their personal
link, as retention would leave them. Before, both were stored (and linked, and a subject created
for an unknown customer) until the next retention run."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from cdp.cli import app
from cdp.clock import FrozenClock
from cdp.ingest.pipeline import ingest_file
from tests.conftest import CdpEnv
from tests.ingest.helpers import count, write_jsonl

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
EVENTS_WINDOW = timedelta(days=730)  # personalization's, the longest of analytics' and its own
SUPPORT_WINDOW = timedelta(days=1095)


def _at(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _event(n: int, customer: str, moment: datetime) -> dict[str, str]:
    return {"message_id": f"m{n}", "customer_id": customer, "event": "Viewed",
            "timestamp": _at(moment)}  # fmt: skip


def test_events_past_every_window_are_counted_expired_and_not_stored(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    rt = cdp_env.runtime
    path = write_jsonl(tmp_path / "events.jsonl", [
        _event(1, "C1", NOW - EVENTS_WINDOW - timedelta(seconds=1)),  # expired
        _event(2, "C1", NOW - EVENTS_WINDOW),  # the window's first instant: kept
        _event(3, "C1", NOW - timedelta(days=10)),
        _event(4, "NEW", NOW - timedelta(days=900)),  # expired, and its customer unknown
        {"customer_id": "C1", "event": "Viewed", "timestamp": "20240115"},  # invalid
    ])  # fmt: skip
    summary = ingest_file(
        runtime=rt, kind="events", path=path, clock=FrozenClock(NOW), batch_size=2
    )
    assert (summary.read, summary.inserted, summary.expired, summary.rejected) == (5, 2, 2, 1)
    assert summary.as_dict()["expired"] == 2
    with rt.data_engine.connect() as conn:
        stored = set(conn.exec_driver_sql("SELECT message_id FROM events").scalars())
    assert stored == {"m2", "m3"}
    assert count(rt, "subjects") == 1  # nothing was created for the expired event's customer
    assert count(rt, "identities") == 1
    # the rejects file holds the invalid row only: an expired row is valid, not an error
    assert summary.rejects_path is not None
    rows = [json.loads(line) for line in summary.rejects_path.read_text().splitlines()]
    assert [r["line"] for r in rows] == [5]

    again = ingest_file(runtime=rt, kind="events", path=path, clock=FrozenClock(NOW))
    assert (again.inserted, again.duplicates, again.expired) == (0, 2, 2)


def test_orders_past_the_support_window_are_stored_without_their_personal_link(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    rt = cdp_env.runtime
    base = {"total": "10.00", "currency": "USD", "customer_id": "C1"}
    path = write_jsonl(tmp_path / "orders.jsonl", [
        {**base, "order_id": "old", "ordered_at": _at(NOW - SUPPORT_WINDOW - timedelta(days=1)),
         "items": [{"sku": "S1", "price": "10.00"}]},
        {**base, "order_id": "edge", "ordered_at": _at(NOW - SUPPORT_WINDOW)},
        {**base, "order_id": "new", "ordered_at": _at(NOW - timedelta(days=3))},
        {**base, "order_id": "stranger", "customer_id": "NOBODY",
         "ordered_at": _at(NOW - timedelta(days=1200))},
    ])  # fmt: skip
    summary = ingest_file(runtime=rt, kind="orders", path=path, clock=FrozenClock(NOW))
    assert (summary.read, summary.inserted, summary.expired, summary.rejected) == (4, 2, 2, 0)
    with rt.data_engine.connect() as conn:
        links = dict(
            conn.exec_driver_sql("SELECT order_ref, subject_id IS NOT NULL FROM orders").all()
        )
        items = conn.exec_driver_sql("SELECT count(*) FROM order_items").scalar_one()
    assert links == {"old": False, "edge": True, "new": True, "stranger": False}
    assert items == 1  # the anonymous sale keeps its line items
    assert count(rt, "subjects") == 1  # no subject for the stranger's old order

    # news about an anonymous order still applies to it; the same rows again are duplicates
    refund = write_jsonl(tmp_path / "refund.jsonl", [
        {**base, "order_id": "old", "status": "refunded",
         "ordered_at": _at(NOW - SUPPORT_WINDOW - timedelta(days=1)),
         "updated_at": _at(NOW - timedelta(days=1))},
    ])  # fmt: skip
    later = ingest_file(runtime=rt, kind="orders", path=refund, clock=FrozenClock(NOW))
    assert (later.updated, later.expired) == (1, 0)
    again = ingest_file(runtime=rt, kind="orders", path=path, clock=FrozenClock(NOW))
    assert (again.inserted, again.duplicates, again.expired) == (0, 4, 0)


def test_a_file_of_expired_events_only_is_not_a_failure(cdp_env: CdpEnv, tmp_path: Path) -> None:
    """The CLI runs on the real clock: events of 2020 are past every window whatever the day."""
    path = write_jsonl(tmp_path / "events.jsonl", [
        {"customer_id": "C1", "event": "Viewed", "timestamp": "2020-01-15T10:00:00Z"},
        {"customer_id": "C2", "event": "Viewed", "timestamp": "2020-01-16T10:00:00Z"},
    ])  # fmt: skip
    result = CliRunner().invoke(app, ["ingest", "events", str(path)])
    assert result.exit_code == 0, result.output
    assert "expired" in result.output
    assert "2 record(s) past every retention window" in result.output
    assert count(cdp_env.runtime, "events") == 0
    assert count(cdp_env.runtime, "subjects") == 0
    assert not (tmp_path / "events.jsonl.rejects.jsonl").exists()
