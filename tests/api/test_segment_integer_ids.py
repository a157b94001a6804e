"""``Order Completed`` through the Segment API with integer ``order_id`` and ``product_id`` (as
a shop's numeric ids arrive from a JavaScript cart): the order is stored under the ids' decimal
text, the same order as a batch file's ``"5001"``; a float id is refused."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from cdp.ingest.pipeline import ingest_file
from tests.conftest import CdpEnv
from tests.ingest.helpers import count, order, write_csv


def _order_completed(**properties: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": "C00001",
        "messageId": str(uuid.uuid4()),
        "timestamp": "2026-03-01T10:00:00+00:00",
        "properties": {"total": 25, "currency": "USD", **properties},
    }


def _post(client: TestClient, key: str, *messages: dict[str, Any]) -> Any:
    body = json.dumps({"batch": list(messages)}).encode()
    return client.post(
        "/v1/batch", content=body, auth=(key, ""), headers={"Content-Type": "application/json"}
    )


def _orders(env: CdpEnv) -> list[tuple[Any, ...]]:
    sql = (
        "SELECT o.order_ref, i.product_id FROM orders o "
        "LEFT JOIN order_items i ON i.order_id = o.id ORDER BY o.order_ref"
    )
    with env.runtime.data_engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql)).all()]


def test_integer_order_and_product_ids_are_stored_as_their_text(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    message = _order_completed(order_id=5001, products=[{"product_id": 42, "price": 25}])
    response = _post(client, key, message)
    assert response.status_code == 200, response.text
    assert _orders(cdp_env) == [("5001", "42")]
    assert count(cdp_env.runtime, "events") == 1


def test_the_api_and_a_batch_file_name_the_same_order(
    client: TestClient, key: str, cdp_env: CdpEnv, tmp_path: Path
) -> None:
    assert _post(client, key, _order_completed(order_id=5001)).status_code == 200
    row = order(1, order_id="5001", ordered_at="2026-03-01T10:00:00Z", total="25.00", items="[]")
    path = write_csv(tmp_path / "orders.csv", [row], list(row))
    summary = ingest_file(runtime=cdp_env.runtime, kind="orders", path=path)
    assert (summary.duplicates, summary.inserted, summary.rejected) == (1, 0, 0), summary.reasons
    assert count(cdp_env.runtime, "orders") == 1


def test_a_float_order_id_is_refused_without_its_value(
    client: TestClient, key: str, cdp_env: CdpEnv
) -> None:
    response = _post(client, key, _order_completed(order_id=5001.5))
    assert response.status_code == 400, response.text
    assert "order_id" in response.text and "5001.5" not in response.text
    assert count(cdp_env.runtime, "orders") == 0


def test_an_order_id_of_zero_is_an_id(client: TestClient, key: str, cdp_env: CdpEnv) -> None:
    """``0`` (or ``"0"``) is an order id like any other; it was read as missing (falsy), so the
    order took the checkout's id, or was refused for want of one."""
    message = _order_completed(order_id=0, checkout_id="chk-9")
    assert _post(client, key, message).status_code == 200
    assert _orders(cdp_env) == [("0", None)]
