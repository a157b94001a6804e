"""The bulk helpers behind the set-based recomputes: session settings are scoped, temporary
tables leave nothing behind, and the fast insert path stores what a Core insert stores."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from cdp.traits.bulk import (
    bulk_insert,
    bulk_session,
    temp_table,
)
from cdp.traits.clv import PREDICTION_COLUMNS
from cdp.traits.models import ClvFit, ClvPrediction
from tests.conftest import CdpEnv
from tests.traits.factories import make_subjects, subject_ids

NOW = datetime(2026, 5, 4, 3, 2, 1, 123456, tzinfo=UTC)
fits_t = ClvFit.__table__  # type: ignore[attr-defined]
pred_t = ClvPrediction.__table__  # type: ignore[attr-defined]


def _setting(conn: sa.Connection, name: str) -> str:
    if conn.dialect.name == "sqlite":
        return str(conn.exec_driver_sql(f"PRAGMA {name}").scalar_one())
    return str(conn.exec_driver_sql(f"SHOW {name}").scalar_one())


def test_bulk_session_settings_do_not_outlive_it(cdp_env: CdpEnv) -> None:
    engine = cdp_env.runtime.data_engine
    names = ("cache_size", "mmap_size") if engine.dialect.name == "sqlite" else ("work_mem",)
    with engine.begin() as conn:
        before = {n: _setting(conn, n) for n in names}
        with bulk_session(conn):
            during = {n: _setting(conn, n) for n in names}
        if engine.dialect.name == "sqlite":
            assert {n: _setting(conn, n) for n in names} == before
    assert during != before
    with engine.begin() as conn:  # PostgreSQL: SET LOCAL ended with the transaction
        assert {n: _setting(conn, n) for n in names} == before


def test_temp_table_holds_the_select_and_is_dropped(cdp_env: CdpEnv) -> None:
    engine = cdp_env.runtime.data_engine
    ids = subject_ids(5, prefix=0xB1)
    with engine.begin() as conn:
        make_subjects(conn, ids)
    subjects = sa.table("subjects", sa.column("id"))
    with engine.begin() as conn:
        with temp_table(
            conn,
            "ids",
            [sa.Column("subject_id", sa.String(32))],
            sa.select(subjects.c.id).where(subjects.c.id.in_(ids[:3])),
            primary_key="subject_id",
        ) as tmp:
            got = sorted(conn.execute(sa.select(tmp.c.subject_id)).scalars())
            name = tmp.name
        assert got == ids[:3]
        assert name not in sa.inspect(conn).get_temp_table_names()
        if engine.dialect.name != "sqlite":
            assert not sa.inspect(conn).has_table(name)


def test_bulk_insert_stores_what_a_core_insert_stores(cdp_env: CdpEnv) -> None:
    engine = cdp_env.runtime.data_engine
    ids = subject_ids(4, prefix=0xB2)
    fit_values = {
        "fitted_at": NOW,
        "calibration_end": NOW,
        "r": 1.0,
        "alpha": 1.0,
        "a": 1.0,
        "b": 1.0,
        "bgnbd_log_likelihood": -1.0,
        "bgnbd_converged": True,
        "n_customers": 4,
        "n_repeat_customers": 2,
    }
    rows = [
        (ids[0], 1.5, 0.25, 0.75, True, 12.5, 3),
        (ids[1], 0.0, 1.0, 0.0, False, None, None),
    ]
    cols = PREDICTION_COLUMNS
    with engine.begin() as conn:
        make_subjects(conn, ids)
        fit_id = conn.execute(sa.insert(fits_t).values(**fit_values).returning(fits_t.c.id))
        fid = fit_id.scalar_one()
        constants = {"fit_id": fid, "computed_at": NOW, "horizon_weeks": 52.0}
        bulk_insert(conn, pred_t, cols, iter(rows), constants=constants)
        conn.execute(
            sa.insert(pred_t),
            [
                {**dict(zip(cols, r, strict=True)), "subject_id": s, **constants}
                for s, r in zip(ids[2:], rows, strict=True)
            ],
        )
    with engine.connect() as conn:
        stored = {
            r.subject_id: tuple(r)[1:]
            for r in conn.execute(sa.select(pred_t).order_by(pred_t.c.subject_id))
        }
        raw_times = conn.execute(sa.text("SELECT subject_id, computed_at FROM clv_predictions"))
        raw = {r[0]: r[1] for r in raw_times}
    assert stored[ids[0]] == stored[ids[2]]
    assert stored[ids[1]] == stored[ids[3]]
    assert stored[ids[0]][1] == NOW  # computed_at round-trips exactly
    assert raw[ids[0]] == raw[ids[2]]  # and is stored in the same form
