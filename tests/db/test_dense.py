"""``read_dense``: one range read when it yields the ids, lookups only for what it did not."""

from __future__ import annotations

from cdp.db.dense import read_dense

STORED = {f"{n:02d}": (f"{n:02d}", n) for n in range(0, 40)}


def _reader() -> tuple[list[object], object, object]:
    calls: list[object] = []

    def read_range(first: str, last: str, limit: int) -> list[tuple[str, int]]:
        calls.append(("range", first, last, limit))
        return [STORED[k] for k in sorted(STORED) if first <= k <= last][:limit]

    def read_ids(ids: list[str]) -> list[tuple[str, int]]:
        calls.append(("ids", tuple(ids)))
        return [STORED[i] for i in ids if i in STORED]

    return calls, read_range, read_ids


def test_a_dense_chunk_is_one_range_read() -> None:
    calls, read_range, read_ids = _reader()
    ids = ["10", "11", "13", "14"]  # "12" lies between them and is dropped
    assert read_dense(ids, read_range, read_ids) == [STORED[i] for i in ids]  # type: ignore[arg-type]
    assert calls == [("range", "10", "14", 8)]


def test_ids_the_range_did_not_yield_are_looked_up() -> None:
    calls, read_range, read_ids = _reader()
    ids = ["10", "11", "12a", "13"]  # "12a" lies in the range but has no row
    rows = read_dense(ids, read_range, read_ids)  # type: ignore[arg-type]
    assert sorted(rows) == [STORED["10"], STORED["11"], STORED["13"]]
    assert calls == [("range", "10", "13", 8), ("ids", ("12a",))]


def test_a_sparse_range_falls_back_to_lookups() -> None:
    calls, read_range, read_ids = _reader()
    ids = ["00", "39"]  # 40 stored between them: at least twice as many as wanted
    assert sorted(read_dense(ids, read_range, read_ids)) == [STORED["00"], STORED["39"]]  # type: ignore[arg-type]
    assert calls == [("range", "00", "39", 4), ("ids", ("00", "39"))]


def test_one_id_or_none_needs_no_range() -> None:
    calls, read_range, read_ids = _reader()
    assert read_dense(["05"], read_range, read_ids) == [STORED["05"]]  # type: ignore[arg-type]
    assert read_dense([], read_range, read_ids) == []  # type: ignore[arg-type]
    assert calls == [("ids", ("05",))]
