"""Several API workers, a batch ingest, erasures and exports at once (loopback, bounded).

Afterwards: the audit chain is linear (gap-free sequence, every link verifies), no person exists
twice (the identifiers sent concurrently by the API and the ingest each name exactly one subject,
and no subject was left half-made), and no export wrote a person whose erasure had finished
before that export began. Runs on the suite's backend: PostgreSQL in CI's second pass (the
production scale-out case), SQLite in the first (several workers on one host).
"""

from __future__ import annotations

import base64
import csv
import json
import os
import random
import subprocess
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from cdp.clock import FrozenClock, utcnow
from cdp.crypto.normalize import IdentityKind
from cdp.exports.run import run_export
from cdp.ingest.sources import create_source
from cdp.privacy.erasure import erase_subject
from cdp.segments.service import create_segment
from cdp.segments.views import SegmentIn
from tests.audit.factories import make_principal
from tests.conftest import CdpEnv
from tests.crash.helpers import CLI, audit_verify, check_integrity, start_server
from tests.exports.conftest import EVERYONE, World
from tests.factories import make_subject
from tests.ingest.helpers import write_csv

SHARED = [f"shared-{i:03d}" for i in range(30)]
PEOPLE = 40
VICTIMS = 12


def _seed(env: CdpEnv) -> tuple[World, list[str], dict[str, str]]:
    rt = env.runtime
    create_segment(runtime=rt, data=SegmentIn(name="everyone", rule=EVERYONE), actor="t")
    world = World(rt, FrozenClock(utcnow() - timedelta(hours=1)))
    emails: dict[str, str] = {}
    for i in range(PEOPLE):
        email = f"person{i}@example.com"
        sid = make_subject(rt, {"email": email}, identities={"email": email})
        world.consent(sid, ["email_marketing"], "granted")
        emails[sid] = email
    world.destination("mail", "csv", "email_marketing", ["email"], min_audience=1)
    return world, list(emails), emails


def _emails_in(result: Any) -> set[str]:
    found: set[str] = set()
    for out in result.manifest.get("outputs", []):
        path = Path(out["path"])
        if path.suffix == ".csv" and path.exists():
            with path.open(encoding="utf-8") as fh:
                found.update(row.get("email", "") for row in csv.DictReader(fh))
    return found


def test_workers_ingest_erasure_and_export_at_once(cdp_env: CdpEnv, tmp_path: Path) -> None:
    world, subjects, emails = _seed(cdp_env)
    rt = cdp_env.runtime
    victims = subjects[:VICTIMS]
    readable = subjects[VICTIMS:]
    key = create_source(runtime=rt, name="web").write_key
    support = make_principal(rt, ["support"]).token
    rows = [{"customer_id": c, "email": f"{c}@shop.example"} for c in SHARED]
    rows += [{"customer_id": f"bulk-{i}", "email": f"bulk{i}@shop.example"} for i in range(800)]
    random.Random(7).shuffle(rows)
    feed = write_csv(tmp_path / "customers.csv", rows, ["customer_id", "email"])

    server, base = start_server(tmp_path / "server.log", workers=2)
    errors: list[str] = []
    erased_at: dict[str, float] = {}
    exports: list[tuple[float, float, Any]] = []
    stop = threading.Event()

    def api_writer(seed: int) -> None:
        order = SHARED[:]
        random.Random(seed).shuffle(order)
        auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
        with httpx.Client(base_url=base, timeout=30) as client:
            for user in order:
                msg = {"userId": user, "traits": {"plan": "gold"}, "messageId": uuid.uuid4().hex}
                r = client.post("/v1/identify", json=msg, headers=auth)
                if r.status_code != 200:
                    errors.append(f"identify {r.status_code}")

    def api_reader() -> None:
        headers = {"Authorization": f"Bearer {support}", "X-Purpose": "support"}
        with httpx.Client(base_url=base, timeout=30) as client:
            while not stop.is_set():
                r = client.get(f"/v1/profiles/{random.choice(readable)}", headers=headers)
                if r.status_code != 200:
                    errors.append(f"read {r.status_code}")

    def eraser() -> None:
        for sid in victims:
            erase_subject(runtime=rt, subject_id=sid)
            erased_at[sid] = time.monotonic()
            time.sleep(0.05)

    def exporter() -> None:
        for _ in range(3):
            started = time.monotonic()
            try:
                result = run_export(
                    runtime=rt,
                    ctx=world.ctx("email_marketing"),
                    segment="everyone",
                    destination="mail",
                    full=True,
                )
            except Exception as exc:
                errors.append(f"export {type(exc).__name__}: {exc}")
                continue
            exports.append((started, time.monotonic(), result))

    ingest = subprocess.Popen(
        [*CLI, "ingest", "customers", str(feed), "--batch-size", "50"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    threads = [threading.Thread(target=api_writer, args=(s,)) for s in (1, 2, 3)]
    threads += [threading.Thread(target=api_reader) for _ in range(2)]
    threads += [threading.Thread(target=eraser), threading.Thread(target=exporter)]
    try:
        for t in threads:
            t.start()
        for t in threads[:3] + threads[5:]:  # the writers, the eraser, the exporter
            t.join(timeout=240)
        assert ingest.wait(timeout=240) == 0, ingest.stderr.read() if ingest.stderr else b""
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
        server.terminate()
        server.wait(timeout=60)
    assert errors == []
    assert len(erased_at) == VICTIMS and len(exports) == 3

    rt = cdp_env.reopen()
    check_integrity(rt)
    with rt.data_engine.connect() as conn:
        count, low, high = conn.execute(
            sa.text("SELECT count(*), min(seq), max(seq) FROM audit_log")
        ).one()
        assert low == 1 and high == count > 0  # one linear chain, no gaps, no forks
        for user in SHARED:
            token = rt.tokenizer.token(IdentityKind.CUSTOMER_ID, user).value
            owners = conn.execute(
                sa.text("SELECT count(DISTINCT subject_id) FROM identities WHERE token = :t"),
                {"t": token},
            ).scalar_one()
            assert owners == 1, "a customer exists twice or not at all"
        bare = conn.execute(
            sa.text(
                "SELECT count(*) FROM subjects s WHERE NOT EXISTS "
                "(SELECT 1 FROM identities i WHERE i.subject_id = s.id)"
            )
        ).scalar_one()
        assert bare == 0
    verified = audit_verify()
    assert verified.returncode == 0, verified.stderr[-2000:]
    for _started, finished, result in exports:
        # Erasure and exports exclude each other (cdp/privacy/erasure_lock.py): an erasure that
        # returned before the export finished committed before the export's run began, so no
        # subject erased before the export committed is ever sent.
        sent = _emails_in(result)
        early = [sid for sid, at in erased_at.items() if at < finished]
        leaked = [sid for sid in early if emails[sid] in sent]
        assert leaked == [], json.dumps(result.manifest["counts"])
