"""Files and mappings that cannot be read as given stop the run with a clear error (exit 2 on the
CLI), before anything is stored where that is possible."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from cdp.errors import InvalidInputError
from cdp.ingest.pipeline import ingest_file
from tests.conftest import CdpEnv
from tests.ingest.helpers import CUSTOMER_HEADER, count, customer, write_csv


def test_an_unreadable_header_stops_the_run_before_anything_is_stored(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    path = tmp_path / "customers.csv"
    path.write_bytes(b"customer_id,email,stra\xdfe\nC1,a1@example.com,x\nC2,a2@example.com,y\n")
    with pytest.raises(InvalidInputError, match="header row"):
        ingest_file(runtime=cdp_env.runtime, kind="customers", path=path)
    assert count(cdp_env.runtime, "subjects") == 0


def test_a_truncated_gzip_file_says_so_after_storing_what_came_before(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    plain = write_csv(
        tmp_path / "c.csv", [customer(i) for i in range(400)], CUSTOMER_HEADER
    ).read_bytes()
    packed = gzip.compress(plain)
    path = tmp_path / "customers.csv.gz"
    path.write_bytes(packed[: len(packed) * 3 // 4])
    with pytest.raises(InvalidInputError, match="not a complete gzip file") as caught:
        ingest_file(runtime=cdp_env.runtime, kind="customers", path=path, batch_size=50)
    assert "example.com" not in str(caught.value)
    stored = count(cdp_env.runtime, "subjects")
    assert 0 < stored < 400  # whole batches before the damage


def test_a_plain_file_named_gz_is_refused(cdp_env: CdpEnv, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "customers.csv.gz", [customer(1)], CUSTOMER_HEADER)
    with pytest.raises(InvalidInputError, match="gzip"):
        ingest_file(runtime=cdp_env.runtime, kind="customers", path=path)


def test_a_mapping_sending_two_columns_to_one_field_is_refused(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    path = tmp_path / "customers.csv"
    path.write_text("Kundennummer,E-Mail,Mail2\nK1,a@example.com,b@example.com\n")
    mapping = tmp_path / "m.json"
    mapping.write_text(
        '{"columns": {"Kundennummer": "customer_id", "E-Mail": "email", "Mail2": "email"}}'
    )
    with pytest.raises(InvalidInputError, match="several columns to email"):
        ingest_file(runtime=cdp_env.runtime, kind="customers", path=path, mapping_path=mapping)


def test_a_mapping_naming_an_unknown_order_field_is_refused(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("Nr,Kunde,Datum,Summe,Waehrung\nO1,C1,2025-01-01,1.00,EUR\n")
    mapping = tmp_path / "m.TOML"  # the suffix in any case
    mapping.write_text(
        '[columns]\nNr = "order_id"\nKunde = "customer_id"\nDatum = "ordered_at"\n'
        'Summe = "totl"\nWaehrung = "currency"\n'
    )
    with pytest.raises(InvalidInputError, match=r"unknown field.*totl"):
        ingest_file(runtime=cdp_env.runtime, kind="orders", path=path, mapping_path=mapping)
    mapping.write_text(mapping.read_text().replace('"totl"', '"total"'))
    assert (
        ingest_file(
            runtime=cdp_env.runtime, kind="orders", path=path, mapping_path=mapping
        ).inserted
        == 1
    )
