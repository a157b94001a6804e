"""A column mapping never lets one column silently overwrite another: a mapped column and an
unmapped column of the target's name are refused in a CSV header (exit 2, naming the field), and a
JSON Lines record whose keys collide after the mapping is rejected at its line. Before, the later
column won: an order went to the wrong customer, a customer's email was silently replaced."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp.clock import FrozenClock
from cdp.errors import InvalidInputError
from cdp.ingest.pipeline import ingest_file
from cdp.ingest.readers import read_csv, read_jsonl
from tests.conftest import CdpEnv
from tests.ingest.helpers import count

CLI = [sys.executable, "-c", "from cdp.cli import main; main()"]


def test_a_mapped_column_and_an_unmapped_one_of_its_name_are_refused_in_csv(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    path = tmp_path / "collo.csv"
    path.write_text(
        "order_id,customer_id,cid2,ordered_at,total,currency\n"
        "MC1,realcust,othercust,2024-01-01,5,USD\n"
    )
    mapping = tmp_path / "m.json"
    mapping.write_text('{"columns": {"cid2": "customer_id"}}')
    with pytest.raises(InvalidInputError, match="named customer_id") as caught:
        ingest_file(runtime=cdp_env.runtime, kind="orders", path=path, mapping_path=mapping)
    assert caught.value.field == "mapping"
    assert "realcust" not in str(caught.value) and "othercust" not in str(caught.value)
    assert count(cdp_env.runtime, "orders") == 0


def test_the_cli_exits_2_naming_the_field(cdp_env: CdpEnv, tmp_path: Path) -> None:
    path = tmp_path / "coll.csv"
    path.write_text("customer_id,email,Work Email\ncoll1,home@example.com,work@example.com\n")
    mapping = tmp_path / "m2.json"
    mapping.write_text('{"columns": {"Work Email": "email"}}')
    done = subprocess.run(
        [*CLI, "ingest", "customers", str(path), "--mapping", str(mapping)],
        capture_output=True, text=True, env=os.environ.copy(), check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    said = " ".join(done.stderr.split())
    assert "named email" in said and "example.com" not in said
    assert count(cdp_env.runtime, "subjects") == 0
    # dropping the other column (or mapping it elsewhere) is the way out
    mapping.write_text('{"columns": {"Work Email": "email", "email": ""}}')
    summary = ingest_file(
        runtime=cdp_env.runtime, kind="customers", path=path, mapping_path=mapping
    )
    assert summary.inserted == 1 and summary.rejected == 0


def test_a_jsonl_record_whose_keys_collide_after_the_mapping_is_rejected_at_its_line(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    base = {"ordered_at": "2024-01-01T00:00:00Z", "total": "5", "currency": "USD"}
    rows = [
        {"order_id": "J1", "cid2": "c1", **base},
        {"order_id": "J2", "customer_id": "realcust", "cid2": "othercust", **base},
        {"order_id": "J3", "customer_id": "c3", **base},
    ]
    path = tmp_path / "o.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    mapping = tmp_path / "m.json"
    mapping.write_text('{"columns": {"cid2": "customer_id"}}')
    summary = ingest_file(
        runtime=cdp_env.runtime,
        kind="orders",
        path=path,
        mapping_path=mapping,
        clock=FrozenClock(datetime(2024, 6, 1, tzinfo=UTC)),  # within the orders' window
    )
    assert (summary.read, summary.inserted, summary.rejected) == (3, 2, 1)
    assert summary.rejects_path is not None
    [reject] = map(json.loads, summary.rejects_path.read_text().splitlines())
    assert reject["line"] == 2 and reject["reason"] == "invalid"
    assert reject["fields"] == ["customer_id"]
    assert "realcust" not in reject["message"] and "othercust" not in reject["message"]


NAMES = st.sampled_from(["a", "b", "c", "d", "customer_id", "email"])


@settings(max_examples=200, deadline=None)
@given(
    header=st.lists(NAMES, min_size=1, max_size=5, unique=True),
    mapping=st.dictionaries(NAMES, NAMES | st.just(""), max_size=4),
)
def test_after_a_mapping_every_kept_cell_is_in_the_record_or_the_file_is_refused(
    header: list[str], mapping: dict[str, str]
) -> None:
    targets = [v for v in mapping.values() if v]
    if len(set(targets)) != len(targets):
        return  # refused when the mapping is loaded (test_input_files)
    cells = [f"v{i}" for i in range(len(header))]
    csv_bytes = (",".join(header) + "\n" + ",".join(cells) + "\n").encode()
    kept = {f"v{i}": mapping.get(h, h) for i, h in enumerate(header) if mapping.get(h, h)}
    names = list(kept.values())
    collides = len(set(names)) != len(names)
    try:
        [csv_record] = list(read_csv(io.BytesIO(csv_bytes), mapping=mapping, limit=1 << 16))
    except InvalidInputError:
        assert collides
    else:
        assert not collides
        assert csv_record.data == {name: cell for cell, name in kept.items()}
    line = json.dumps(dict(zip(header, cells, strict=True))).encode() + b"\n"
    [jsonl_record] = list(read_jsonl(io.BytesIO(line), mapping=mapping, limit=1 << 16))
    if collides:
        assert jsonl_record.error == "invalid" and jsonl_record.data is None
    else:
        assert jsonl_record.data == {name: cell for cell, name in kept.items()}
