"""Erasure: one subject seeded into every store is gone from every table and from a dump; its old
ciphertexts no longer decrypt; a replayed event is refused; the audit chain verifies; others stay.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from cdp.access.context import AccessContext
from cdp.audit.chain import GENESIS_HASH, canonical, chain_hash, format_at
from cdp.audit.models import AuditLogRow
from cdp.audit.service import record_access
from cdp.crypto.normalize import IdentityKind
from cdp.crypto.sealed_record import unpack
from cdp.db.all_models import metadata
from cdp.errors import KeyShreddedError
from cdp.privacy.erasure import erase_subject, is_tombstoned
from cdp.privacy.registry import ENTRIES, Treatment, present_entries
from cdp.profiles.merge import event_field
from cdp.profiles.pii_records import read_one
from cdp.runtime import Runtime
from tests.conftest import CdpEnv
from tests.factories import checkpoint_sqlite
from tests.privacy.seed import Person, seed_person

RETAINED = {e.table for e in ENTRIES if e.treatment is Treatment.RETAIN}


def _ctx() -> AccessContext:
    return AccessContext(
        principal_id="p-test",
        principal_name="support-agent",
        roles=("support",),
        purpose="support",
        request_id="req-1",
        client="127.0.0.1",
    )


def _all_rows(rt: Runtime) -> dict[str, list[tuple[Any, ...]]]:
    with rt.data_engine.connect() as conn:
        names = sa.inspect(conn).get_table_names()
        return {n: [tuple(r) for r in conn.execute(sa.text(f'SELECT * FROM "{n}"'))] for n in names}


def _hits(rows: dict[str, list[tuple[Any, ...]]], needle: str) -> set[str]:
    raw = needle.encode()
    found = set()
    for table, table_rows in rows.items():
        for row in table_rows:
            for v in row:
                if isinstance(v, bytes | bytearray | memoryview):
                    if raw in bytes(v):
                        found.add(table)
                elif v is not None and needle in str(v):
                    found.add(table)
    return found


def _ciphertexts(rt: Runtime, sid: str) -> list[tuple[str, bytes]]:
    with rt.data_engine.connect() as conn:
        pii = read_one(conn, sid).items()
        events = conn.execute(
            sa.text("SELECT message_id, properties_ct FROM events WHERE subject_id = :s"),
            {"s": sid},
        ).all()
    return [(f, bytes(c)) for f, c in pii] + [(event_field(m), bytes(c)) for m, c in events]


def _dump(cdp_env: CdpEnv) -> dict[str, str]:
    """A logical dump of the data database, per table (sqlite3 iterdump / pg_dump)."""
    per_table: dict[str, str] = {}
    if cdp_env.backend == "sqlite":
        path = cdp_env.home / "cdp.db"
        checkpoint_sqlite(str(path))
        conn = sqlite3.connect(path)
        try:
            for line in conn.iterdump():
                if line.startswith('INSERT INTO "'):
                    table = line.split('"')[1]
                    per_table[table] = per_table.get(table, "") + line + "\n"
        finally:
            conn.close()
        return per_table
    url = make_url(cdp_env.settings.data_url)
    args = ["pg_dump", "-h", url.host or "127.0.0.1", "-p", str(url.port or 5432)]
    args += ["-U", url.username or "postgres", "--data-only", url.database or ""]
    out = subprocess.run(
        args,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PGPASSWORD": url.password or ""},
    ).stdout
    table = ""
    for line in out.splitlines():
        if line.startswith("COPY public."):
            table = line.split()[1].removeprefix("public.").strip('"')
        per_table[table] = per_table.get(table, "") + line + "\n"
    return per_table


def _chain_verifies(rt: Runtime) -> int:
    log = AuditLogRow.__table__  # type: ignore[attr-defined]
    with rt.data_engine.connect() as conn:
        rows = conn.execute(sa.select(log).order_by(log.c.seq)).mappings().all()
    prev = GENESIS_HASH
    for r in rows:
        assert r["prev_hash"] == prev
        at = format_at(r["at"])
        body = canonical(
            r["seq"],
            at,
            r["principal_id"],
            r["principal_name"],
            r["roles"],
            r["action"],
            r["resource"],
            r["subject_ids"],
            r["fields"],
            r["purpose"],
            r["outcome"],
            r["request_id"],
            r["client"],
        )
        assert chain_hash(r["prev_hash"], body) == r["hash"], f"record {r['seq']} broken"
        prev = r["hash"]
    return len(rows)


def _secrets(person: Person) -> list[str]:
    return [*person.plaintexts, person.customer_id, *person.message_ids]


def test_erasure_leaves_nothing_of_the_subject(cdp_env: CdpEnv, tmp_path: Path) -> None:
    rt = cdp_env.runtime
    target = seed_person(rt, "target")
    other = seed_person(rt, "other")
    for p in (target, other):
        record_access(
            runtime=rt,
            ctx=_ctx(),
            action="read",
            resource="pii:contact",
            outcome="allowed",
            subject_ids=[p.subject_id],
            fields=["email"],
        )
    before = _all_rows(rt)
    # the seeding reached every table that names subjects
    for entry in present_entries(metadata, before):
        assert target.subject_id in str(before[entry.table]), entry.table
    old_ciphertexts = _ciphertexts(rt, target.subject_id)
    assert len(old_ciphertexts) == 6
    backup = tmp_path / "backup.db"
    if cdp_env.backend == "sqlite":
        checkpoint_sqlite(str(cdp_env.home / "cdp.db"))
        shutil.copy(cdp_env.home / "cdp.db", backup)
    other_before = {
        t: [r for r in rows if other.subject_id in str(r)] for t, rows in before.items()
    }

    outcome = erase_subject(runtime=rt, subject_id=target.subject_id)
    assert outcome.keys_shredded == 1 and outcome.tombstones == 3
    assert outcome.deleted["events"] == 2 and outcome.unlinked["orders"] == 2
    assert target.subject_id not in json.dumps(outcome.as_dict())

    after = _all_rows(rt)
    assert _hits(after, target.subject_id) <= RETAINED, "the id survives outside the audit log"
    for token in target.tokens:
        assert _hits(after, token) == {"tombstones"}
    for secret in _secrets(target):
        assert _hits(after, secret) == set(), secret
    # orders stay for the accounts, without the person
    order_rows = [r for r in after["orders"] if any(ref in r for ref in target.order_refs)]
    assert len(order_rows) == 2

    dump = _dump(cdp_env)
    for table, text in dump.items():
        if table not in RETAINED:
            assert target.subject_id not in text, table
        if table != "tombstones":
            assert not any(t in text for t in target.tokens), table
        assert not any(s in text for s in _secrets(target)), table
    if cdp_env.backend == "sqlite":
        # the file itself: deleted rows were overwritten (secure_delete), not just unlinked
        raw = (cdp_env.home / "cdp.db").read_bytes()
        for secret in [*_secrets(target), *target.order_refs[:0]]:
            assert secret.encode() not in raw
        for _field, blob in old_ciphertexts:
            assert blob not in raw

    # the copy taken before erasure: ciphertext is there, but no key opens it any more
    fresh = cdp_env.reopen()
    if cdp_env.backend == "sqlite":
        conn = sqlite3.connect(backup)
        [(copied,)] = conn.execute(
            "SELECT sealed FROM pii_records WHERE subject_id = ?", (target.subject_id,)
        ).fetchall()
        conn.close()
        assert len(unpack(copied)) == 4
    for field, blob in old_ciphertexts:
        with pytest.raises(KeyShreddedError):
            fresh.vault.decrypt(target.subject_id, field, blob)

    # the audit chain still verifies, and still shows the read of the other subject
    assert _chain_verifies(fresh) >= 2
    # other subjects are untouched
    after_other = {t: [r for r in rows if other.subject_id in str(r)] for t, rows in after.items()}
    assert after_other == other_before
    readable = [
        fresh.vault.decrypt(other.subject_id, f, b)
        for f, b in _ciphertexts(fresh, other.subject_id)
    ]
    assert set(readable[:4]) == set(other.plaintexts[:4])
    assert is_tombstoned(runtime=fresh, kind=IdentityKind.EMAIL, raw=target.email)
    assert not is_tombstoned(runtime=fresh, kind=IdentityKind.EMAIL, raw=other.email)


def test_a_replayed_event_is_refused_after_erasure(cdp_env: CdpEnv, tmp_path: Path) -> None:
    pipeline = pytest.importorskip("cdp.ingest.pipeline")
    rt = cdp_env.runtime
    person = seed_person(rt, "replay")
    erase_subject(runtime=rt, subject_id=person.subject_id)
    path = tmp_path / "events.jsonl"
    path.write_text(
        json.dumps(
            {
                "message_id": person.message_ids[0],
                "email": person.email.upper(),
                "event": "Product Viewed",
                "timestamp": "2026-03-01T10:00:00Z",
                "properties": {"note": "replayed"},
            }
        )
        + "\n"
    )
    summary = pipeline.ingest_file(runtime=rt, kind="events", path=path)
    assert summary.rejected == 1 and summary.reasons.get("erased") == 1
    with rt.data_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM subjects")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one() == 0


def test_erasing_twice_changes_nothing(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    person = seed_person(rt, "twice")
    erase_subject(runtime=rt, subject_id=person.subject_id)
    before = _all_rows(rt)
    again = erase_subject(runtime=rt, subject_id=person.subject_id)
    assert again.keys_shredded == 0 and again.tombstones == 0
    assert again.deleted == {} and again.unlinked == {}
    assert _all_rows(rt) == before
