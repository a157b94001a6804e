"""Records a file cannot give us are rejected with their line and reason; the rest ingests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cdp.ingest.pipeline import ingest_file
from tests.conftest import CdpEnv
from tests.ingest.helpers import count, write_jsonl


def _rejects(path: Path | None) -> dict[int, dict[str, Any]]:
    assert path is not None
    return {r["line"]: r for r in map(json.loads, path.read_text().splitlines())}


def test_an_address_or_traits_that_is_not_an_object_rejects_its_line_only(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    rows: list[dict[str, Any]] = [
        {"customer_id": "C1"},
        {"customer_id": "C2"},
        {"customer_id": "C3", "address": 5},  # line 3, in the second batch
        {"customer_id": "C4", "traits": 5},
        {"customer_id": "C5", "address": [1, 2]},
        {"customer_id": "C6", "traits": [["tier", "gold"]]},
        {"customer_id": "C7", "address": False, "city": "Springfield"},
        {"customer_id": "C8", "address": {"city": "Springfield"}, "traits": {"tier": "gold"}},
        {"customer_id": "C9", "address": None, "traits": None},
    ]
    path = write_jsonl(tmp_path / "customers.jsonl", rows)
    summary = ingest_file(runtime=cdp_env.runtime, kind="customers", path=path, batch_size=2)
    assert (summary.read, summary.inserted, summary.rejected) == (9, 4, 5)
    rejects = _rejects(summary.rejects_path)
    assert {n: (r["reason"], r["fields"]) for n, r in rejects.items()} == {
        3: ("invalid", ["address"]),
        4: ("invalid", ["traits"]),
        5: ("invalid", ["address"]),
        6: ("invalid", ["traits"]),
        7: ("invalid", ["address"]),
    }
    assert count(cdp_env.runtime, "subjects") == 4
