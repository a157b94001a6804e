"""The rejects file names fields from the schema only: never a key taken from the input (a
headerless file's first row is read as its header; a JSON key can be anything)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cdp.errors import InvalidInputError
from cdp.ingest.pipeline import ingest_file
from tests.conftest import CdpEnv

EMAIL = "jane.doe@example.com"


def _rejects(path: Path) -> str:
    return path.with_name(path.name + ".rejects.jsonl").read_text()


def test_a_headerless_orders_file_leaves_no_value_in_its_error(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    """Its first row is read as the header, whose columns name no field of orders: the run stops
    before anything is stored, naming the columns by position only (it rejected each row, naming
    them ``(unknown field)``)."""
    path = tmp_path / "orders.csv"
    path.write_text(
        f"O1,{EMAIL},2024-01-15T10:00:00Z,10.00,USD\nO2,john@example.com,2024-01-16,5.00,USD\n"
    )
    with pytest.raises(InvalidInputError) as caught:
        ingest_file(runtime=cdp_env.runtime, kind="orders", path=path)
    text = str(caught.value)
    assert "columns 1, 2, 3, 4, 5" in text
    assert EMAIL not in text and "jane" not in text and "2024-01-15" not in text
    assert not path.with_name(path.name + ".rejects.jsonl").exists()


def test_an_unknown_json_key_is_not_named(cdp_env: CdpEnv, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    record = {"event": "Viewed", "customer_id": "C1", "timestamp": "2026-01-01T00:00:00Z"}
    path.write_text(json.dumps({**record, EMAIL: "x"}) + "\n" + json.dumps(record) + "\n")
    summary = ingest_file(runtime=cdp_env.runtime, kind="events", path=path)
    assert summary.rejected == 1 and summary.inserted == 1
    assert EMAIL not in _rejects(path)
