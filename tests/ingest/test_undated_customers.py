"""A customer row without created_at never overrides a dated profile (it may be older news), so
a file whose rows of one customer fall in different batches runs twice to the same database."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdp.ingest.pipeline import ingest_file
from tests.conftest import CdpEnv
from tests.ingest.helpers import CUSTOMER_HEADER, customer, dump_tables, write_csv
from tests.ingest.test_ingest_files import _pii


@pytest.mark.parametrize("batch_size", [1, 2, 5000])
def test_an_undated_row_only_fills_and_a_rerun_changes_nothing(
    cdp_env: CdpEnv, tmp_path: Path, batch_size: int
) -> None:
    rows = [
        customer(1, first_name="Ann", created_at="2024-01-01T00:00:00Z", city=""),
        customer(2),
        customer(3),
        customer(1, first_name="Zed", created_at="", city="Leeds"),
    ]
    path = write_csv(tmp_path / "customers.csv", rows, CUSTOMER_HEADER)
    rt = cdp_env.runtime
    first = ingest_file(runtime=rt, kind="customers", path=path, batch_size=batch_size)
    assert first.rejected == 0
    pii = _pii(cdp_env, "C00001")
    assert pii["first_name"] == "Ann" and pii["city"] == "Leeds"  # filled, not overridden
    before = dump_tables(rt)
    again = ingest_file(runtime=rt, kind="customers", path=path, batch_size=batch_size)
    assert again.updated == 0 and again.inserted == 0 and again.duplicates == 4
    assert dump_tables(rt) == before
