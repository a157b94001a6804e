"""verify names the first bad record after an edit, a delete, a reorder, an insert; a signed
checkpoint catches a cut tail; PostgreSQL refuses UPDATE and DELETE on the log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Connection
from typer.testing import CliRunner

from cdp.audit.chain import canonical, chain_hash, format_at
from cdp.audit.checkpoint import read_checkpoint, write_checkpoint
from cdp.audit.service import record_access
from cdp.audit.verify import verify_chain
from cdp.cli import app
from cdp.errors import KeyMaterialError
from tests.audit.factories import guards_off, make_ctx
from tests.conftest import CdpEnv

N = 12


def _fill(env: CdpEnv, n: int = N) -> None:
    ctx = make_ctx()
    for i in range(n):
        record_access(
            runtime=env.runtime,
            ctx=ctx,
            action="read",
            resource="profile",
            outcome="allowed",
            subject_ids=[f"{i:032x}"],
            fields=["email"],
        )


@contextmanager
def _tamper(env: CdpEnv) -> Iterator[Connection]:
    """A transaction that may change the log (its append-only triggers off, as an attacker
    with owner rights could do)."""
    with env.runtime.data_engine.begin() as conn, guards_off(conn, env.backend):
        yield conn


def test_intact_chain_verifies(cdp_env: CdpEnv) -> None:
    _fill(cdp_env)
    result = verify_chain(runtime=cdp_env.runtime)
    assert result.ok and result.records == N and result.last_seq == N


def test_empty_chain_verifies(cdp_env: CdpEnv) -> None:
    assert verify_chain(runtime=cdp_env.runtime).ok


def test_edit_is_found(cdp_env: CdpEnv) -> None:
    _fill(cdp_env)
    with _tamper(cdp_env) as conn:
        conn.exec_driver_sql("UPDATE audit_log SET fields = '[]' WHERE seq = 5")
    result = verify_chain(runtime=cdp_env.runtime)
    assert (result.ok, result.first_bad_seq) == (False, 5)
    assert "altered" in (result.problem or "")


def test_delete_is_found(cdp_env: CdpEnv) -> None:
    _fill(cdp_env)
    with _tamper(cdp_env) as conn:
        conn.exec_driver_sql("DELETE FROM audit_log WHERE seq = 7")
    result = verify_chain(runtime=cdp_env.runtime)
    assert result.first_bad_seq == 7 and "missing" in (result.problem or "")


def test_delete_of_first_record_is_found(cdp_env: CdpEnv) -> None:
    _fill(cdp_env)
    with _tamper(cdp_env) as conn:
        conn.exec_driver_sql("DELETE FROM audit_log WHERE seq = 1")
    assert verify_chain(runtime=cdp_env.runtime).first_bad_seq == 1


def test_reorder_is_found(cdp_env: CdpEnv) -> None:
    _fill(cdp_env)
    with _tamper(cdp_env) as conn:
        a, b = (
            conn.exec_driver_sql(f"SELECT subject_ids FROM audit_log WHERE seq = {s}").scalar()
            for s in (4, 9)
        )
        conn.execute(sa.text("UPDATE audit_log SET subject_ids = :v WHERE seq = 4"), {"v": b})
        conn.execute(sa.text("UPDATE audit_log SET subject_ids = :v WHERE seq = 9"), {"v": a})
    assert verify_chain(runtime=cdp_env.runtime).first_bad_seq == 4


def test_renumbered_insert_is_found(cdp_env: CdpEnv) -> None:
    """Insert a forged record at 6 (shifting 6.. up by one) with a self-consistent hash: the
    record after it no longer links, and the forged one does not follow record 5 either."""
    _fill(cdp_env)
    with _tamper(cdp_env) as conn:
        rows = conn.exec_driver_sql("SELECT seq FROM audit_log WHERE seq >= 6 ORDER BY seq DESC")
        for (seq,) in list(rows):
            conn.exec_driver_sql(f"UPDATE audit_log SET seq = {seq + 1} WHERE seq = {seq}")
        prev = conn.exec_driver_sql("SELECT hash FROM audit_log WHERE seq = 5").scalar()
        at = "2026-01-01T00:00:00.000000Z"
        fields = (6, at, "x", "forger", "support", "read", "profile", "[]", "[]", "support")
        canon = canonical(*fields, "allowed", "r", "127.0.0.1")
        conn.execute(
            sa.text(
                "INSERT INTO audit_log (seq, at, principal_id, principal_name, roles, action, "
                "resource, subject_ids, fields, purpose, outcome, request_id, client, prev_hash,"
                " hash) VALUES (6, :at, 'x', 'forger', 'support', 'read', 'profile', '[]', '[]',"
                " 'support', 'allowed', 'r', '127.0.0.1', :prev, :hash)"
            ),
            {"at": "2026-01-01 00:00:00.000000", "prev": prev, "hash": chain_hash(prev, canon)},
        )
    result = verify_chain(runtime=cdp_env.runtime)
    assert not result.ok and result.first_bad_seq in (6, 7)


def test_tail_truncation_needs_the_checkpoint(cdp_env: CdpEnv, tmp_path: Path) -> None:
    rt = cdp_env.runtime
    _fill(cdp_env)
    done = verify_chain(runtime=rt)
    cp_file = tmp_path / "cp.json"
    write_checkpoint(runtime=rt, seq=done.last_seq, digest=done.last_hash, out=cp_file)
    with _tamper(cdp_env) as conn:
        conn.exec_driver_sql("DELETE FROM audit_log WHERE seq > 9")
        conn.exec_driver_sql(
            "UPDATE audit_head SET seq = 9, hash = (SELECT hash FROM audit_log WHERE seq = 9)"
        )
    result = verify_chain(runtime=rt)  # the cut records' subject index rows are left behind
    assert (result.ok, result.first_bad_seq) == (False, 10)
    with _tamper(cdp_env) as conn:
        conn.exec_driver_sql("DELETE FROM audit_subjects WHERE seq > 9")
    assert verify_chain(runtime=rt).ok  # a clean cut is invisible without the checkpoint
    cp = read_checkpoint(runtime=rt, path=cp_file)
    result = verify_chain(runtime=rt, checkpoint=cp)
    assert (result.ok, result.first_bad_seq) == (False, 10)


def test_checkpoint_of_the_empty_log_verifies_then_and_later(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    """A checkpoint taken right after ``cdp init`` names record 0 with the genesis hash: it
    verifies on the empty log and once records were appended (it said "BROKEN at record 0")."""
    runner = CliRunner()
    cp_file = tmp_path / "cp.json"
    r = runner.invoke(app, ["audit", "checkpoint", "--out", str(cp_file)])
    assert r.exit_code == 0 and "record 0" in r.output, r.output
    r = runner.invoke(app, ["audit", "verify", "--checkpoint", str(cp_file)])
    assert r.exit_code == 0 and "OK" in r.output, r.output
    _fill(cdp_env)
    cp = read_checkpoint(runtime=cdp_env.runtime, path=cp_file)
    for workers in (1, 2):
        assert verify_chain(runtime=cdp_env.runtime, checkpoint=cp, workers=workers).ok
    r = runner.invoke(app, ["audit", "verify", "--checkpoint", str(cp_file)])
    assert r.exit_code == 0 and "OK" in r.output, r.output
    other = tmp_path / "other.json"
    write_checkpoint(runtime=cdp_env.runtime, seq=0, digest="a" * 64, out=other)
    cp = read_checkpoint(runtime=cdp_env.runtime, path=other)
    result = verify_chain(runtime=cdp_env.runtime, checkpoint=cp)
    assert (result.ok, result.first_bad_seq) == (False, 0)


def test_deleting_a_subjects_index_rows_is_found(cdp_env: CdpEnv) -> None:
    """Deleting a subject's ``audit_subjects`` rows hid its reads from the subject access report
    while verify said OK: verify names the first record whose index rows are gone."""
    from cdp.audit import activity_reports

    rt = cdp_env.runtime
    ctx = make_ctx()
    victim, other = "ab" * 16, "cd" * 16
    for i in range(6):
        record_access(
            runtime=rt,
            ctx=ctx,
            action="read",
            resource="profile",
            outcome="allowed",
            subject_ids=[other] if i < 2 else [victim, other],
        )
    assert activity_reports.subject_access(runtime=rt, subject_id=victim).total == 4
    with _tamper(cdp_env) as conn:
        conn.execute(sa.text("DELETE FROM audit_subjects WHERE subject_id = :s"), {"s": victim})
    assert activity_reports.subject_access(runtime=rt, subject_id=victim).total == 0
    result = verify_chain(runtime=rt)
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert "subject index leaves out" in (result.problem or "")
    r = CliRunner().invoke(app, ["audit", "verify"])
    assert r.exit_code == 1 and "BROKEN at record 3" in r.output and "subject index" in r.output


def test_subject_lists_of_any_length_verify(cdp_env: CdpEnv) -> None:
    """No subject, one, thousands (an export's record) and a list naming a subject twice (one
    index row): the index matches."""
    from cdp.audit.writer import append
    from tests.audit.factories import make_entry

    many = tuple(f"{n:032x}" for n in range(1, 3001))
    entries = [
        make_entry(subject_ids=()),
        make_entry(subject_ids=("ab" * 16,)),
        make_entry(subject_ids=many, action="export"),
        make_entry(subject_ids=("ab" * 16, "cd" * 16, "ab" * 16)),
    ]
    with cdp_env.runtime.data_engine.begin() as conn:
        append(conn, entries)
    for workers in (1, 2):
        assert verify_chain(runtime=cdp_env.runtime, workers=workers).ok
    with _tamper(cdp_env) as conn:
        conn.exec_driver_sql(f"DELETE FROM audit_subjects WHERE subject_id = '{2999:032x}'")
    result = verify_chain(runtime=cdp_env.runtime)
    assert (result.ok, result.first_bad_seq) == (False, 3)


def test_head_ahead_of_log_is_reported(cdp_env: CdpEnv) -> None:
    _fill(cdp_env)
    with _tamper(cdp_env) as conn:
        conn.exec_driver_sql("DELETE FROM audit_log WHERE seq > 10")
    assert verify_chain(runtime=cdp_env.runtime).first_bad_seq == 11


def test_forged_checkpoint_is_refused(cdp_env: CdpEnv, tmp_path: Path) -> None:
    rt = cdp_env.runtime
    _fill(cdp_env, 3)
    cp_file = tmp_path / "cp.json"
    write_checkpoint(runtime=rt, seq=3, digest="a" * 64, out=cp_file)
    doc = json.loads(cp_file.read_text())
    doc["seq"] = 2
    cp_file.write_text(json.dumps(doc))
    with pytest.raises(KeyMaterialError):
        read_checkpoint(runtime=rt, path=cp_file)


def test_cli_verify_and_checkpoint(cdp_env: CdpEnv, tmp_path: Path) -> None:
    _fill(cdp_env)
    runner = CliRunner()
    cp_file = tmp_path / "cp.json"
    r = runner.invoke(app, ["audit", "checkpoint", "--out", str(cp_file)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["audit", "verify", "--checkpoint", str(cp_file)])
    assert r.exit_code == 0 and "OK" in r.output
    with _tamper(cdp_env) as conn:
        conn.exec_driver_sql("DELETE FROM audit_log WHERE seq > 10")
        conn.exec_driver_sql("DELETE FROM audit_head")
    r = runner.invoke(app, ["audit", "verify", "--checkpoint", str(cp_file)])
    assert r.exit_code == 1
    assert "record 11" in r.output


def test_triggers_reject_update_and_delete(cdp_env: CdpEnv) -> None:
    """Both backends refuse to change a record or its index rows (SQLite: migration 0017s),
    a ``DELETE`` without ``WHERE`` included; PostgreSQL also refuses ``TRUNCATE``."""
    _fill(cdp_env, 2)
    statements = [
        "UPDATE audit_log SET outcome = 'denied' WHERE seq = 1",
        "DELETE FROM audit_log WHERE seq = 2",
        "DELETE FROM audit_log",
        "UPDATE audit_subjects SET subject_id = 'x'",
        "DELETE FROM audit_subjects",
    ]
    if cdp_env.backend == "postgresql":
        statements += ["TRUNCATE audit_subjects", "TRUNCATE audit_log"]
    for statement in statements:
        with (
            pytest.raises(sa.exc.DBAPIError, match="append-only"),
            cdp_env.runtime.data_engine.begin() as conn,
        ):
            conn.exec_driver_sql(statement)
    assert verify_chain(runtime=cdp_env.runtime).ok


def test_postgres_index_takes_only_the_rows_of_records_being_appended(cdp_env: CdpEnv) -> None:
    """An ``audit_subjects`` row for an existing record (a subject it does not name) or for a
    record not written yet is refused; the writer's own rows, an export's thousands included,
    go in with their records."""
    from cdp.audit.writer import append
    from tests.audit.factories import make_entry

    if cdp_env.backend != "postgresql":
        pytest.skip("the index's insert trigger is PostgreSQL's")
    _fill(cdp_env, 3)
    for seq in (2, 3, 4, 99):
        with (
            pytest.raises(sa.exc.DBAPIError, match="records being appended"),
            cdp_env.runtime.data_engine.begin() as conn,
        ):
            conn.execute(
                sa.text("INSERT INTO audit_subjects (subject_id, seq) VALUES (:s, :q)"),
                {"s": "f" * 32, "q": seq},
            )
    many = tuple(f"{n:032x}" for n in range(1, 5001))
    with cdp_env.runtime.data_engine.begin() as conn:
        append(conn, [make_entry(subject_ids=many, action="export"), make_entry()])
    _fill(cdp_env, 2)
    assert verify_chain(runtime=cdp_env.runtime).ok
    with cdp_env.runtime.data_engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM audit_subjects").scalar_one() == 5005


def test_postgres_guards_come_and_go_with_their_migration(cdp_env: CdpEnv) -> None:
    from cdp.db import migrate

    if cdp_env.backend != "postgresql":
        pytest.skip("the triggers are PostgreSQL's")
    engine = cdp_env.runtime.data_engine
    _fill(cdp_env, 2)
    migrate.downgrade(engine, "data", "0013c")
    with engine.begin() as conn:  # 0003a's guards only: the index takes any row
        conn.exec_driver_sql(f"INSERT INTO audit_subjects VALUES ('{'f' * 32}', 1)")
    assert verify_chain(runtime=cdp_env.runtime).first_bad_seq == 1
    migrate.upgrade(engine, "data")
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE audit_subjects")


def test_sqlite_guards_come_and_go_with_their_migration(cdp_env: CdpEnv) -> None:
    from cdp.db import migrate

    if cdp_env.backend != "sqlite":
        pytest.skip("migration 0017s guards SQLite")
    engine = cdp_env.runtime.data_engine
    _fill(cdp_env, 3)
    migrate.downgrade(engine, "data", "0016a")
    with engine.begin() as conn:  # unguarded: the statement goes through, verify finds it
        conn.exec_driver_sql("DELETE FROM audit_log WHERE seq = 2")
    assert verify_chain(runtime=cdp_env.runtime).first_bad_seq == 2
    migrate.upgrade(engine, "data")
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM audit_log WHERE seq = 3")


def test_database_and_python_canonical_encodings_agree(cdp_env: CdpEnv) -> None:
    from cdp.audit.verify_range import SeqRange, _canonical_batches

    rt = cdp_env.runtime
    ctx = make_ctx(["dpo", "support"], purpose="privacy_request", name="ops@shop.example")
    written = [
        record_access(
            runtime=rt,
            ctx=ctx,
            action="lookup:email",
            resource="profile.orders",
            outcome=outcome,
            subject_ids=[f"{i:032x}", f"{i + 1:032x}"],
            fields=["subject_id", "orders", "pii:contact"],
        )
        for i, outcome in enumerate(("allowed", "denied", "error"))
    ]
    raw = rt.data_engine.raw_connection()
    try:
        dialect = rt.data_engine.dialect.name
        batches = list(_canonical_batches(raw.driver_connection, dialect, SeqRange(None, None)))
    finally:
        raw.close()
    rows = [row for batch in batches for row in batch]
    assert [canon.encode() for _, canon, _, _ in rows] == [r.canonical() for r in written]


def test_the_cdp_command_exits_1_on_a_broken_chain(cdp_env: CdpEnv, tmp_path: Path) -> None:
    """Through the real entry point (``main``), not ``CliRunner``: a monitoring job runs
    ``cdp audit verify || alert``, and the command exited 0 on a tampered log (click returns
    the status of ``typer.Exit`` when not standalone, and ``main`` dropped it)."""
    import os
    import subprocess

    from tests.crash.helpers import CLI

    _fill(cdp_env)

    def cdp(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args], capture_output=True, text=True, env=os.environ.copy(), check=False
        )

    checkpoint = tmp_path / "cp.json"
    assert cdp("audit", "verify").returncode == 0
    assert cdp("audit", "checkpoint", "--out", str(checkpoint)).returncode == 0
    with _tamper(cdp_env) as conn:
        conn.exec_driver_sql("DELETE FROM audit_log WHERE seq > 10")
        conn.exec_driver_sql("DELETE FROM audit_head")
    cut = cdp("audit", "verify", "--checkpoint", str(checkpoint))
    assert cut.returncode == 1 and "record 11" in cut.stdout + cut.stderr
    with _tamper(cdp_env) as conn:
        conn.exec_driver_sql("UPDATE audit_log SET principal_name = 'x' WHERE seq = 5")
    broken = cdp("audit", "verify")
    assert broken.returncode == 1 and "record 5" in broken.stdout + broken.stderr
    refused = cdp("audit", "checkpoint", "--out", str(tmp_path / "other.json"))
    assert refused.returncode == 1


def test_an_edit_of_any_character_of_the_time_is_found(cdp_env: CdpEnv) -> None:
    """Every character of the stored time is covered by the hash, on SQLite the date-time
    separator too (it was rebuilt there rather than read, so an edit of it verified and moved the
    record out of the reports' time ranges)."""
    _fill(cdp_env)
    edit = (
        "substr(at, 1, 10) || '~' || substr(at, 12)"
        if cdp_env.backend == "sqlite"
        else "at + interval '1 microsecond'"
    )
    with _tamper(cdp_env) as conn:
        conn.exec_driver_sql(f"UPDATE audit_log SET at = {edit} WHERE seq = 4")
    result = verify_chain(runtime=cdp_env.runtime)
    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert "altered" in (result.problem or "")


def test_a_value_of_the_wrong_type_is_found_not_a_crash(cdp_env: CdpEnv) -> None:
    """A value stored as a BLOB (SQLite's json_array refuses it) names its record as altered;
    the records before it are verified as usual."""
    if cdp_env.backend != "sqlite":
        pytest.skip("PostgreSQL's text columns cannot hold a BLOB")
    _fill(cdp_env)
    with _tamper(cdp_env) as conn:
        conn.exec_driver_sql("UPDATE audit_log SET client = X'41' WHERE seq = 4")
    result = verify_chain(runtime=cdp_env.runtime)
    assert (result.ok, result.first_bad_seq, result.records) == (False, 4, 3)
    assert "altered" in (result.problem or "")


def test_a_rewritten_log_is_found_by_its_head(cdp_env: CdpEnv) -> None:
    """Records altered and every hash after them recomputed: each link holds, but the chain head
    still holds the hash the last record had."""
    _fill(cdp_env)
    with _tamper(cdp_env) as conn:
        conn.exec_driver_sql("UPDATE audit_log SET principal_name = 'someone-else' WHERE seq = 4")
        prev = conn.exec_driver_sql("SELECT hash FROM audit_log WHERE seq = 3").scalar()
        rows = conn.execute(
            sa.text(
                "SELECT seq, at, principal_id, principal_name, roles, action, resource, "
                "subject_ids, fields, purpose, outcome, request_id, client FROM audit_log "
                "WHERE seq >= 4 ORDER BY seq"
            )
        ).all()
        for row in rows:
            when = datetime.fromisoformat(row.at) if isinstance(row.at, str) else row.at
            canon = canonical(
                row.seq,
                format_at(when if when.tzinfo else when.replace(tzinfo=UTC)),
                row.principal_id,
                row.principal_name,
                row.roles,
                row.action,
                row.resource,
                row.subject_ids,
                row.fields,
                row.purpose,
                row.outcome,
                row.request_id,
                row.client,
            )
            digest = chain_hash(prev, canon)
            conn.execute(
                sa.text("UPDATE audit_log SET prev_hash = :p, hash = :h WHERE seq = :s"),
                {"p": prev, "h": digest, "s": row.seq},
            )
            prev = digest
    result = verify_chain(runtime=cdp_env.runtime)
    assert (result.ok, result.first_bad_seq) == (False, N)
    assert "head" in (result.problem or "")
