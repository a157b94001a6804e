"""Crash safety (SIGKILL mid-ingest, then rerun) and no personal data in clear in the database."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from cdp.demo import generate_shop
from cdp.ingest.customer_record import CustomerRecord
from cdp.ingest.pipeline import ingest_file
from tests.conftest import CdpEnv
from tests.factories import checkpoint_sqlite
from tests.ingest.helpers import count

CLI = [sys.executable, "-c", "from cdp.cli import main; main()"]


def _components(path: Path) -> tuple[int, int]:
    """(distinct identity values, connected groups of customers) computed from the file."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    ctx = {"default_region": "US"}
    with path.open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            r = CustomerRecord.model_validate(row, context=ctx)
            ids = [f"c:{r.customer_id}", f"e:{r.email}"] + ([f"p:{r.phone}"] if r.phone else [])
            for other in ids[1:]:
                parent[find(other)] = find(ids[0])
    return len(parent), len({find(x) for x in parent})


def test_sigkill_mid_ingest_then_rerun_leaves_no_duplicates_or_partial_subjects(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    shop = generate_shop(tmp_path / "shop", customers=6_000, orders=6_000, seed=11)
    rt = cdp_env.runtime
    proc = subprocess.Popen(
        [*CLI, "ingest", "customers", str(shop.customers), "--batch-size", "300"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    deadline = time.monotonic() + 120
    while count(rt, "subjects") < 600 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the ingest finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    cdp_env.reopen()
    rt = cdp_env.runtime
    committed = count(rt, "subjects")
    assert 0 < committed < 6_000
    # no partial subject: every stored subject has its identities and its PII
    orphans = "WHERE NOT EXISTS (SELECT 1 FROM {t} x WHERE x.subject_id = s.id)"
    assert count(rt, "subjects s", orphans.format(t="identities")) == 0
    assert count(rt, "subjects s", orphans.format(t="pii_records")) == 0

    rerun = subprocess.run(
        [*CLI, "ingest", "customers", str(shop.customers), "--batch-size", "300"],
        capture_output=True,
        env=os.environ.copy(),
        timeout=600,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    cdp_env.reopen()
    rt = cdp_env.runtime
    identities, groups = _components(shop.customers)
    assert count(rt, "identities") == identities
    assert count(rt, "subjects") == groups
    assert count(rt, "subjects s", orphans.format(t="identities")) == 0
    assert count(rt, "subjects s", orphans.format(t="pii_records")) == 0
    # the summaries add up: a third run counts every record as a duplicate
    third = ingest_file(runtime=rt, kind="customers", path=shop.customers)
    assert third.duplicates == third.read == 6_000


def _samples(path: Path, n: int = 60) -> list[bytes]:
    out: list[bytes] = []
    with path.open(encoding="utf-8") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            if i >= n:
                break
            for f in ("email", "phone", "first_name", "last_name", "street"):
                value = row[f].strip()
                if len(value.encode()) >= 6:  # shorter strings can occur in random bytes
                    out.append(value.encode())
            full = (row["first_name"] + " " + row["last_name"]).strip()
            if len(full.encode()) >= 6:
                out.append(full.encode())
            if row["email"]:
                out.append(row["email"].strip().lower().encode())
    return out


def test_names_emails_phones_appear_only_as_ciphertext_or_tokens(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    shop = generate_shop(tmp_path / "shop", customers=400, orders=1_200, seed=5)
    rt = cdp_env.runtime
    for kind in ("customers", "orders", "consents", "events"):
        ingest_file(runtime=rt, kind=kind, path=getattr(shop, kind))
    samples = _samples(shop.customers)
    # normalised phones as stored in identities' input (E.164) must not appear either
    ctx = {"default_region": "US"}
    with shop.customers.open(encoding="utf-8") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            if i >= 60:
                break
            phone = CustomerRecord.model_validate(row, context=ctx).phone
            if phone:
                samples.append(phone.encode())
    assert len(samples) > 200
    if cdp_env.backend == "sqlite":
        db = Path(make_url(rt.settings.data_url).database or "")
        rt.data_engine.dispose()
        checkpoint_sqlite(str(db))
        blobs = [db.read_bytes()]
        wal = db.with_name(db.name + "-wal")
        if wal.exists():
            blobs.append(wal.read_bytes())
    else:
        url = make_url(rt.settings.data_url).set(drivername="postgresql")
        dump = subprocess.run(
            ["pg_dump", "--data-only", url.render_as_string(hide_password=False)],
            capture_output=True,
            check=True,
            timeout=300,
        )
        blobs = [dump.stdout]
        assert b"COPY public.pii_records" in dump.stdout
    hits = [s for s in samples for blob in blobs if s in blob]
    assert hits == [], f"{len(hits)} personal values found in clear"
    with rt.data_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM pii_records")).scalar_one() > 0


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_exit_status_when_nothing_could_be_ingested(
    cdp_env: CdpEnv, tmp_path: Path, fmt: str
) -> None:
    path = tmp_path / f"bad.{fmt}"
    path.write_text("customer_id,email\n,not-an-email\n" if fmt == "csv" else '{"email": "nope"}\n')
    done = subprocess.run(
        [*CLI, "ingest", "customers", str(path)], capture_output=True, env=os.environ.copy()
    )
    assert done.returncode == 1
    assert b"nope" not in done.stdout + done.stderr
    assert b"not-an-email" not in done.stdout + done.stderr
