"""Verifying the chain in ranges, one process each, finds exactly what one pass finds: the same
first bad record, the same problem, the same count of records verified before it."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Connection

from cdp.audit.checkpoint import read_checkpoint, write_checkpoint
from cdp.audit.verify import _split, verify_chain
from tests.audit.test_verify import _fill, _tamper
from tests.conftest import CdpEnv

N = 30  # with three ranges the cuts fall after records 10 and 20


def _edit(seq: int) -> Callable[[Connection], None]:
    return lambda c: c.exec_driver_sql(f"UPDATE audit_log SET fields = '[]' WHERE seq = {seq}")


def _delete(seq: int) -> Callable[[Connection], None]:
    return lambda c: c.exec_driver_sql(f"DELETE FROM audit_log WHERE seq = {seq}")


def _relink(seq: int) -> Callable[[Connection], None]:
    return lambda c: c.exec_driver_sql(
        f"UPDATE audit_log SET prev_hash = '{'ab' * 32}' WHERE seq = {seq}"
    )


def _swap(a: int, b: int) -> Callable[[Connection], None]:
    def run(c: Connection) -> None:
        va, vb = (
            c.exec_driver_sql(f"SELECT subject_ids FROM audit_log WHERE seq = {s}").scalar()
            for s in (a, b)
        )
        c.execute(sa.text(f"UPDATE audit_log SET subject_ids = :v WHERE seq = {a}"), {"v": vb})
        c.execute(sa.text(f"UPDATE audit_log SET subject_ids = :v WHERE seq = {b}"), {"v": va})

    return run


def _copy_as(src: int, dst: int) -> Callable[[Connection], None]:
    """A stray copy of record ``src`` under another sequence number (below 1 or past the end)."""
    cols = (
        "at, principal_id, principal_name, roles, action, resource, subject_ids, fields, "
        "purpose, outcome, request_id, client, prev_hash, hash"
    )
    return lambda c: c.exec_driver_sql(
        f"INSERT INTO audit_log (seq, {cols}) SELECT {dst}, {cols} FROM audit_log WHERE seq = {src}"
    )


def _cut_tail(c: Connection) -> None:
    c.exec_driver_sql("DELETE FROM audit_log WHERE seq > 20")
    c.exec_driver_sql(
        "UPDATE audit_head SET seq = 20, hash = (SELECT hash FROM audit_log WHERE seq = 20)"
    )


TAMPERS: dict[str, Callable[[Connection], None] | None] = {
    "intact": None,
    "edit first": _edit(1),
    "edit last of a range": _edit(10),
    "edit first of a range": _edit(11),
    "edit last": _edit(N),
    "delete first": _delete(1),
    "delete last of a range": _delete(10),
    "delete first of a range": _delete(11),
    "delete a whole range": lambda c: c.exec_driver_sql(
        "DELETE FROM audit_log WHERE seq > 10 AND seq <= 20"
    ),
    "relink first of a range": _relink(21),
    "relink inside a range": _relink(15),
    "swap across ranges": _swap(5, 25),
    "stray record below": _copy_as(3, 0),
    "stray record past the end": _copy_as(3, N + 1),
    "cut tail": _cut_tail,
    # the subject index (audit_subjects), which the chain does not cover
    "index row deleted": lambda c: c.exec_driver_sql("DELETE FROM audit_subjects WHERE seq = 15"),
    "index emptied": lambda c: c.exec_driver_sql("DELETE FROM audit_subjects"),
    "index row moved to a later record": lambda c: c.exec_driver_sql(
        "UPDATE audit_subjects SET seq = 26 WHERE seq = 5"
    ),
    "index row of another subject": lambda c: c.exec_driver_sql(
        f"UPDATE audit_subjects SET subject_id = '{'f' * 32}' WHERE seq = 12"
    ),
    "index row added to a record": lambda c: c.exec_driver_sql(
        f"INSERT INTO audit_subjects (subject_id, seq) VALUES ('{'f' * 32}', 21)"
    ),
    "index row past the end": lambda c: c.exec_driver_sql(
        f"INSERT INTO audit_subjects (subject_id, seq) VALUES ('{'f' * 32}', {N + 5})"
    ),
    "index row below the first record": lambda c: c.exec_driver_sql(
        f"INSERT INTO audit_subjects (subject_id, seq) VALUES ('{'f' * 32}', 0)"
    ),
}


def _outcome(env: CdpEnv, workers: int, **kw: object) -> tuple[object, ...]:
    r = verify_chain(runtime=env.runtime, workers=workers, **kw)  # type: ignore[arg-type]
    return (r.ok, r.first_bad_seq, r.problem, r.records, r.last_seq, r.last_hash)


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_ranges_find_what_one_pass_finds(cdp_env: CdpEnv, tmp_path: object, tamper: str) -> None:
    rt = cdp_env.runtime
    _fill(cdp_env, N)
    done = verify_chain(runtime=rt, workers=1)
    assert done.ok and done.records == N
    cp_file = tmp_path / "cp.json"  # type: ignore[operator]
    write_checkpoint(runtime=rt, seq=done.last_seq, digest=done.last_hash, out=cp_file)
    change = TAMPERS[tamper]
    if change is not None:
        with _tamper(cdp_env) as conn:
            change(conn)
    cp = read_checkpoint(runtime=rt, path=cp_file)
    one = _outcome(cdp_env, 1, checkpoint=cp)
    assert one[0] is (tamper == "intact")
    for workers in (2, 3, 7):
        assert _outcome(cdp_env, workers, checkpoint=cp) == one, workers


@given(
    lo=st.integers(min_value=-5, max_value=10**9),
    span=st.integers(min_value=1, max_value=10**7),
    parts=st.integers(min_value=1, max_value=64),
)
def test_ranges_cover_every_sequence_number_once(lo: int, span: int, parts: int) -> None:
    hi = lo + span - 1
    ranges = _split((lo, hi), parts)
    assert 1 <= len(ranges) <= parts
    assert ranges[0].after is None and ranges[-1].upto is None
    for a, b in itertools.pairwise(ranges):
        assert a.upto is not None and a.upto == b.after
        assert a.after is None or a.after < a.upto
    for seq in {lo - 1, lo, hi, hi + 1, (lo + hi) // 2}:
        holders = [
            r
            for r in ranges
            if (r.after is None or seq > r.after) and (r.upto is None or seq <= r.upto)
        ]
        assert len(holders) == 1


def test_a_failing_worker_costs_time_not_truth(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that cannot open the database: its range is verified in this process."""
    from cdp.audit import verify
    from cdp.audit.verify_range import Source

    _fill(cdp_env, N)
    with _tamper(cdp_env) as conn:
        _edit(25)(conn)
    monkeypatch.setattr(verify, "_source", lambda _rt: Source("sqlite", "/nonexistent/dir/x.db"))
    assert _outcome(cdp_env, 3) == _outcome(cdp_env, 1)
    assert _outcome(cdp_env, 3)[1] == 25


INDEX_FOUND = {
    "index row deleted": (15, "leaves out"),
    "index emptied": (1, "leaves out"),
    "index row moved to a later record": (5, "leaves out"),
    "index row of another subject": (12, "leaves out"),
    "index row added to a record": (21, "attributes record 21 to a subject it does not name"),
    "index row past the end": (N + 5, "not in the log"),
    "index row below the first record": (0, "not in the log"),
}


@pytest.mark.parametrize("tamper", list(INDEX_FOUND))
def test_subject_index_tampering_names_the_first_record(cdp_env: CdpEnv, tamper: str) -> None:
    """The subject access report reads the subject index, which the chain does not cover:
    verify checks it against the records' subject lists and names the first wrong record."""
    _fill(cdp_env, N)
    with _tamper(cdp_env) as conn:
        TAMPERS[tamper](conn)  # type: ignore[misc]
    seq, why = INDEX_FOUND[tamper]
    for workers in (1, 3):
        result = verify_chain(runtime=cdp_env.runtime, workers=workers)
        assert (result.ok, result.first_bad_seq) == (False, seq), (workers, result.problem)
        assert why in (result.problem or "") and "subject index" in (result.problem or "")
        assert result.records == N  # the chain itself is intact
