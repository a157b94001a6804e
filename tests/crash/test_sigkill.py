"""SIGKILL mid-write: every acknowledged write survives, the database stays consistent, and the
audit records of acknowledged reads survive with an unbroken chain.

"Acknowledged" means what the writer was told: a 2xx answer from the API, or a record count the
batch ingestion reported after its transaction committed. Anything not acknowledged may or may
not be there; nothing acknowledged may be missing.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa

from cdp.crypto.normalize import IdentityKind
from cdp.ingest.sources import create_source
from tests.audit.factories import make_principal
from tests.conftest import CdpEnv
from tests.crash.helpers import audit_verify, check_integrity, start_server
from tests.factories import make_subject
from tests.ingest.helpers import write_csv

ROWS = 20_000
INGEST = """
import sys
from pathlib import Path
from cdp.ingest.pipeline import ingest_file
from cdp.runtime import get_runtime

def acknowledged(records: int, _bytes: int) -> None:
    print(records, flush=True)  # after the batch's transaction committed

ingest_file(runtime=get_runtime(), kind="customers", path=Path(sys.argv[1]), batch_size=250,
            progress=acknowledged)
"""


def test_sigkill_during_batch_ingest_keeps_every_acknowledged_record(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    rows = [
        {"customer_id": f"K{i:06d}", "email": f"k{i}@example.com", "first_name": f"N{i}"}
        for i in range(ROWS)
    ]
    path = write_csv(tmp_path / "customers.csv", rows, ["customer_id", "email", "first_name"])
    proc = subprocess.Popen(
        [sys.executable, "-c", INGEST, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
        text=True,
    )
    assert proc.stdout is not None
    acked = 0
    for line in proc.stdout:
        acked = int(line)
        if acked >= 2_000:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 2_000 <= acked < ROWS, "the ingest finished before it could be killed"

    rt = cdp_env.reopen()
    check_integrity(rt)
    tokens = [rt.tokenizer.token(IdentityKind.CUSTOMER_ID, r["customer_id"]).value for r in rows]
    with rt.data_engine.connect() as conn:
        stored = {
            t
            for (t,) in conn.execute(
                sa.text("SELECT token FROM identities WHERE kind = 'customer_id'")
            )
        }
        subjects = conn.execute(sa.text("SELECT count(*) FROM subjects")).scalar_one()
    missing = [i for i in range(acked) if tokens[i] not in stored]
    assert missing == [], f"{len(missing)} acknowledged records lost"
    assert subjects == len(stored)  # one subject per customer, none half-written


def _basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def test_sigkill_of_the_api_keeps_acknowledged_writes_and_read_audits(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    rt = cdp_env.runtime
    key = create_source(runtime=rt, name="web").write_key
    support = make_principal(rt, ["support"]).token
    people = [
        make_subject(rt, {"email": f"r{i}@example.com"}, identities={"email": f"r{i}@example.com"})
        for i in range(5)
    ]
    proc, base = start_server(tmp_path / "server.log")
    acked_writes: list[str] = []
    acked_reads: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        with httpx.Client(base_url=base, timeout=10) as client:
            while not stop.is_set():
                mid = uuid.uuid4().hex
                msg = {"userId": f"u-{mid[:8]}", "event": "Viewed", "messageId": mid}
                try:
                    r = client.post("/v1/track", json=msg, headers={"Authorization": _basic(key)})
                except httpx.HTTPError:
                    return
                if r.status_code == 200:
                    acked_writes.append(mid)

    def reader(n: int) -> None:
        headers = {"Authorization": f"Bearer {support}", "X-Purpose": "support"}
        with httpx.Client(base_url=base, timeout=10) as client:
            while not stop.is_set():
                rid = f"crash-{uuid.uuid4().hex}"
                try:
                    r = client.get(
                        f"/v1/profiles/{people[n % 5]}", headers=headers | {"X-Request-ID": rid}
                    )
                except httpx.HTTPError:
                    return
                if r.status_code == 200:
                    acked_reads.append(rid)

    threads = [threading.Thread(target=writer) for _ in range(2)]
    threads += [threading.Thread(target=reader, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 90
        while (len(acked_writes) < 60 or len(acked_reads) < 60) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # requests are in flight on every thread
        proc.wait()
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
        for t in threads:
            t.join(timeout=30)
    assert len(acked_writes) >= 60 and len(acked_reads) >= 60, "too few requests acknowledged"

    rt = cdp_env.reopen()
    check_integrity(rt)
    with rt.data_engine.connect() as conn:
        events = {m for (m,) in conn.execute(sa.text("SELECT message_id FROM events"))}
        audited = {
            r
            for (r,) in conn.execute(
                sa.text("SELECT request_id FROM audit_log WHERE outcome = 'allowed'")
            )
        }
    assert [m for m in acked_writes if m not in events] == []
    assert [r for r in acked_reads if r not in audited] == []
    verified = audit_verify()
    assert verified.returncode == 0, verified.stderr[-2000:]
