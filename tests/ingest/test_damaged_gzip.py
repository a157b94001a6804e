"""A ``.gz`` input is checked whole (decompressed to nowhere, its CRC and length compared) before
its first record is read: a damaged or cut file stops the run with nothing ingested. Before, a
corrupted block was read as wrong rows, which were stored batch by batch until the CRC check at
the end of the file failed."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp.errors import InvalidInputError
from cdp.ingest.gzip_check import verify_gzip
from cdp.ingest.pipeline import ingest_file
from tests.conftest import CdpEnv
from tests.ingest.helpers import count, order, write_jsonl

CLI = [sys.executable, "-c", "from cdp.cli import main; main()"]
STALE = '{"line": 1, "reason": "invalid", "fields": [], "message": "an earlier run"}\n'


def _orders_jsonl(tmp_path: Path, n: int) -> bytes:
    rows = [order(i, total="-1" if i % 50 == 0 else "10.00") for i in range(1, n + 1)]
    return write_jsonl(tmp_path / "plain.jsonl", rows).read_bytes()


def _stored_block_corrupted(tmp_path: Path, n: int = 3000) -> Path:
    """``n`` orders in a gzip file of stored (uncompressed) blocks, one total near the end
    changed from 10.00 to 90.00: the bytes read back are valid JSON, only the CRC says no."""
    packed = bytearray(gzip.compress(_orders_jsonl(tmp_path, n), compresslevel=0))
    at = packed.rfind(b'"total": "10.00"', 0, len(packed) - len(packed) // 10)
    assert at > 0
    packed[at + len('"total": "')] = ord("9")
    path = tmp_path / "orders.jsonl.gz"
    path.write_bytes(bytes(packed))
    return path


def _deflate_corrupted(tmp_path: Path, n: int = 3000) -> Path:
    """A compressed file with one byte flipped in its second half such that zlib decodes the
    whole stream without complaint and only the CRC check fails (the case where wrong rows came
    out)."""
    packed = gzip.compress(_orders_jsonl(tmp_path, n), compresslevel=6)
    for at in range(len(packed) * 2 // 3, len(packed) - 8):
        damaged = bytearray(packed)
        damaged[at] ^= 0x01
        try:
            zlib.decompress(bytes(damaged), 31)
        except zlib.error as exc:
            if "incorrect data check" in str(exc):
                break
    else:
        pytest.fail("no corruption that only the CRC notices")
    path = tmp_path / "orders.jsonl.gz"
    path.write_bytes(bytes(damaged))
    return path


def _cut(tmp_path: Path, n: int = 3000) -> Path:
    packed = gzip.compress(_orders_jsonl(tmp_path, n), compresslevel=1)
    path = tmp_path / "orders.jsonl.gz"
    path.write_bytes(packed[: len(packed) * 3 // 4])
    return path


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (_stored_block_corrupted, "CRC"),
        (_deflate_corrupted, "CRC"),
        (_cut, "cut short"),
    ],
)
def test_a_damaged_gzip_file_ingests_nothing(
    cdp_env: CdpEnv, tmp_path: Path, make: object, said: str
) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    rejects = path.with_name(path.name + ".rejects.jsonl")
    rejects.write_text(STALE)  # an earlier run's: left as it is
    with pytest.raises(InvalidInputError, match=said) as caught:
        ingest_file(runtime=cdp_env.runtime, kind="orders", path=path, batch_size=100)
    message = str(caught.value)
    assert "orders.jsonl.gz" in message and "nothing was ingested" in message
    assert "example.com" not in message
    assert count(cdp_env.runtime, "orders") == 0
    assert count(cdp_env.runtime, "subjects") == 0
    assert rejects.read_text() == STALE
    assert not list(tmp_path.glob(".cdp-rejects-*"))


def test_the_cli_exits_2_with_one_line_and_stores_nothing(cdp_env: CdpEnv, tmp_path: Path) -> None:
    path = _stored_block_corrupted(tmp_path, 600)
    done = subprocess.run(
        [*CLI, "ingest", "orders", str(path), "--batch-size", "100"],
        capture_output=True, text=True, env=os.environ.copy(), check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    said = " ".join(done.stderr.split())
    assert "CRC" in said and "nothing was ingested" in said, said
    assert "Traceback" not in done.stderr
    assert count(cdp_env.runtime, "orders") == 0
    assert not path.with_name(path.name + ".rejects.jsonl").exists()


def test_a_sound_gzip_file_is_ingested_as_its_plain_twin(cdp_env: CdpEnv, tmp_path: Path) -> None:
    """Several gzip members (``cat a.gz b.gz``) are one file, as gzip reads them."""
    plain = _orders_jsonl(tmp_path, 300)
    half = plain.index(b"\n", len(plain) // 2) + 1
    path = tmp_path / "orders.jsonl.gz"
    path.write_bytes(gzip.compress(plain[:half]) + gzip.compress(plain[half:]))
    summary = ingest_file(runtime=cdp_env.runtime, kind="orders", path=path, batch_size=100)
    assert (summary.read, summary.inserted, summary.rejected) == (300, 294, 6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(min_size=0, max_size=3000), cut=st.integers(0, 4000), flip=st.integers())
def test_the_check_passes_exactly_what_gzip_reads_whole(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, cut: int, flip: int
) -> None:
    packed = bytearray(gzip.compress(data))
    if flip % 3 == 0 and packed:
        packed[flip % len(packed)] ^= 1 << (flip % 8)
    packed = packed[: max(cut, len(packed) // 2)] if flip % 2 else packed
    try:
        whole = gzip.decompress(bytes(packed))
    except (OSError, EOFError, zlib.error):
        whole = None
    path = tmp_path_factory.mktemp("gz") / "x.jsonl.gz"
    path.write_bytes(bytes(packed))
    with path.open("rb") as handle:
        if whole is None:
            with pytest.raises(InvalidInputError, match="nothing was ingested"):
                verify_gzip(handle, path)
        else:
            verify_gzip(handle, path)
        assert handle.tell() == 0  # ready to be read from the start
    json.dumps(whole is None)  # (the outcome is the test's, not a constant)
