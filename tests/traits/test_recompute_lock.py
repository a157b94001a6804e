"""The recomputed trait tables stay consistent with ``subjects`` without foreign keys: a
recompute step writes no row for a subject deleted before its lock, an erasure that comes during
a step waits and then removes what it wrote (PostgreSQL), and a merge moves or drops the
absorbed subject's rows (merges and erasures during a step: test_recompute_merge_race.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cdp.clock import FrozenClock
from cdp.consent.triggers import ledger_unlocked
from cdp.crypto.normalize import IdentityKind
from cdp.db.all_models import metadata
from cdp.db.models import Identity, Subject
from cdp.ingest.pipeline import ingest_file
from cdp.privacy.erasure import erase_subject
from cdp.traits import clv, loyalty, order_traits
from cdp.traits.config import TraitsConfig
from cdp.traits.models import ClvFit, ClvPrediction, SubjectTraits
from cdp.traits.recompute_lock import RECOMPUTED, drop_orphans, step_lock
from tests.conftest import CdpEnv
from tests.ingest.helpers import CUSTOMER_HEADER, customer, order, write_csv, write_jsonl
from tests.traits.factories import OrderSpec, add_orders, generate_shop, make_subjects, subject_ids

NOW = datetime(2026, 6, 1, tzinfo=UTC)
CLV_NOW = datetime(2026, 4, 1, 8, tzinfo=UTC)
CFG = TraitsConfig()
subjects_t = Subject.__table__  # type: ignore[attr-defined]
traits_t = SubjectTraits.__table__  # type: ignore[attr-defined]
fits_t = ClvFit.__table__  # type: ignore[attr-defined]
pred_t = ClvPrediction.__table__  # type: ignore[attr-defined]


def _rows_of(conn: sa.Connection, subject_id: str) -> dict[str, int]:
    return {
        name: conn.execute(
            sa.select(sa.func.count())
            .select_from(metadata.tables[name])
            .where(metadata.tables[name].c.subject_id == subject_id)
        ).scalar_one()
        for name in RECOMPUTED
    }


def _orphans(conn: sa.Connection) -> dict[str, int]:
    out = {}
    for name in RECOMPUTED:
        t = metadata.tables[name]
        missing = ~sa.exists().where(subjects_t.c.id == t.c.subject_id)
        out[name] = conn.execute(
            sa.select(sa.func.count()).select_from(t).where(missing)
        ).scalar_one()
    return out


def _shop(env: CdpEnv, n: int = 6) -> list[str]:
    ids = subject_ids(n, prefix=0xC1)
    with env.runtime.data_engine.begin() as conn:
        make_subjects(conn, ids)
        add_orders(
            conn,
            [
                OrderSpec(sid, NOW - timedelta(days=10 * k + i), 400.0 + 10 * k)
                for i, sid in enumerate(ids)
                for k in range(4)
            ],
        )
    return ids


def _delete_subject(conn: sa.Connection, subject_id: str) -> None:
    """What an erasure leaves of a subject in the tables these tests touch: its orders
    unlinked, the subject row and its consent events gone (the recomputed tables are left for
    the code under test)."""
    orders = metadata.tables["orders"]
    conn.execute(sa.update(orders).where(orders.c.subject_id == subject_id).values(subject_id=None))
    with ledger_unlocked(conn, reason="erasure"):  # its consent events go with it
        conn.execute(sa.delete(subjects_t).where(subjects_t.c.id == subject_id))


def _deleting_before(monkeypatch: pytest.MonkeyPatch, module: Any, subject_id: str) -> list[int]:
    """Make ``module``'s step start by deleting ``subject_id``, as if an erasure had committed
    just before the step took its lock."""
    calls: list[int] = []

    @contextmanager
    def deleting(conn: sa.Connection, *tables: sa.Table) -> Iterator[None]:
        calls.append(1)
        _delete_subject(conn, subject_id)
        with step_lock(conn, *tables):
            yield

    monkeypatch.setattr(module, "step_lock", deleting)
    return calls


def test_order_traits_and_tiers_skip_a_subject_deleted_before_their_step(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = cdp_env.runtime.data_engine
    ids = _shop(cdp_env)
    gone = ids[2]
    calls = _deleting_before(monkeypatch, order_traits, gone)
    with engine.begin() as conn:
        n = order_traits.compute_order_traits(conn, cfg=CFG, now=NOW)
    assert calls and n == len(ids) - 1
    with engine.begin() as conn:
        make_subjects(conn, [gone])  # back (the id is reused only to test the next step)
    calls = _deleting_before(monkeypatch, loyalty, gone)
    with engine.begin() as conn:
        changes = loyalty.evaluate_tiers(conn, cfg=CFG.loyalty, now=NOW)
    assert calls and changes == len(ids) - 1
    with engine.connect() as conn:
        assert _rows_of(conn, gone) == dict.fromkeys(RECOMPUTED, 0)
        assert _rows_of(conn, ids[0])["subject_traits"] == 1
        assert _rows_of(conn, ids[0])["loyalty_status"] == 1
        assert _orphans(conn) == dict.fromkeys(RECOMPUTED, 0)


def test_clv_predictions_leave_out_a_subject_deleted_before_their_step(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = cdp_env.runtime.data_engine
    orders = metadata.tables["orders"]
    with engine.begin() as conn:
        generate_shop(conn, customers=400, end=CLV_NOW - timedelta(days=1), seed=7)
        gone = conn.execute(
            sa.select(orders.c.subject_id)
            .where(orders.c.status == "completed")
            .order_by(orders.c.subject_id)
            .limit(1)
        ).scalar_one()
    calls = _deleting_before(monkeypatch, clv, gone)
    with engine.begin() as conn:
        clv.fit(conn, calibration_end=(CLV_NOW - timedelta(days=1)).date(), now=CLV_NOW)
        n = clv.predict(conn, cfg=CFG.clv, now=CLV_NOW)
    with engine.connect() as conn:
        stored = set(conn.execute(sa.select(pred_t.c.subject_id)).scalars())
        assert _orphans(conn) == dict.fromkeys(RECOMPUTED, 0)
    # the summary, read under the lock, no longer has it
    assert calls and n == len(stored) and gone not in stored


def test_drop_orphans_and_step_lock_reject_other_tables(cdp_env: CdpEnv) -> None:
    engine = cdp_env.runtime.data_engine
    ids = subject_ids(2, prefix=0xC3)
    row = {"computed_at": NOW, "orders": 0, "occasions": 0, "total_value": 0.0,
           "lifecycle_stage": "prospect", "value_layer": "potential"}  # fmt: skip
    with engine.begin() as conn:
        make_subjects(conn, ids[:1])
        conn.execute(sa.insert(traits_t), [{**row, "subject_id": s} for s in ids])
        assert drop_orphans(conn, traits_t) == 1
        assert list(conn.execute(sa.select(traits_t.c.subject_id)).scalars()) == ids[:1]
        with (
            pytest.raises(ValueError, match="not a recomputed table"),
            step_lock(conn, subjects_t),
        ):
            pass


def _waiting_on(conn: sa.Connection, table: str) -> int:
    return int(
        conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_locks WHERE NOT granted"
                " AND relation = CAST(:t AS regclass)"
            ),
            {"t": table},
        ).scalar_one()
    )


def test_an_erasure_waits_for_a_recompute_step_then_removes_its_rows(
    cdp_env: CdpEnv,
) -> None:
    """PostgreSQL: the lock holds the erasure off until the recompute commits (SQLite has one
    writer at a time, so there the erasure simply runs before or after the recompute)."""
    engine = cdp_env.runtime.data_engine
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers: no interleaving to test")
    ids = _shop(cdp_env, 3)
    victim = ids[1]
    errors: list[BaseException] = []

    def erase() -> None:
        try:
            erase_subject(runtime=cdp_env.runtime, subject_id=victim)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    eraser = threading.Thread(target=erase)
    with engine.begin() as conn, step_lock(conn, traits_t):
        conn.execute(sa.delete(traits_t))
        conn.execute(
            sa.insert(traits_t),
            [
                {"subject_id": s, "computed_at": NOW, "orders": 0, "occasions": 0,
                 "total_value": 0.0, "lifecycle_stage": "prospect",
                 "value_layer": "potential"}
                for s in ids
            ],
        )  # fmt: skip
        eraser.start()
        with engine.connect() as watcher:
            for _ in range(300):  # up to 30 s for the erasure to reach the lock
                if _waiting_on(watcher, "subject_traits"):
                    break
                threading.Event().wait(0.1)
            else:
                pytest.fail("the erasure never waited for the recompute's lock")
        assert eraser.is_alive()
    eraser.join(timeout=60)
    assert not eraser.is_alive() and not errors
    with engine.connect() as conn:
        assert _rows_of(conn, victim)["subject_traits"] == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(traits_t)).scalar_one() == 2
        assert _orphans(conn) == dict.fromkeys(RECOMPUTED, 0)


def _subject_of(env: CdpEnv, customer_id: str) -> str:
    tok = env.runtime.tokenizer.token(IdentityKind.CUSTOMER_ID, customer_id).value
    ident = Identity.__table__  # type: ignore[attr-defined]
    with env.runtime.data_engine.connect() as conn:
        return str(
            conn.execute(sa.select(ident.c.subject_id).where(ident.c.token == tok)).scalar_one()
        )


def test_a_merge_moves_or_drops_the_absorbed_subjects_trait_rows(
    cdp_env: CdpEnv, tmp_path: Path
) -> None:
    rt = cdp_env.runtime
    clock = FrozenClock(NOW - timedelta(days=30))
    ingest_file(
        runtime=rt, kind="customers", clock=clock,
        path=write_csv(tmp_path / "a.csv", [customer(1, phone="")], CUSTOMER_HEADER),
    )  # fmt: skip
    clock.advance(days=1)
    ingest_file(
        runtime=rt, kind="orders", clock=clock,
        path=write_jsonl(tmp_path / "o.jsonl", [order(7, "C00002"), order(8, "C00001")]),
    )  # fmt: skip
    a, b = _subject_of(cdp_env, "C00001"), _subject_of(cdp_env, "C00002")
    engine = rt.data_engine
    with engine.begin() as conn:
        order_traits.compute_order_traits(conn, cfg=CFG, now=NOW)
    with engine.begin() as conn:
        loyalty.evaluate_tiers(conn, cfg=CFG.loyalty, now=NOW)
        fit_id = conn.execute(
            sa.insert(fits_t)
            .values(fitted_at=NOW, calibration_end=NOW, r=1.0, alpha=1.0, a=1.0, b=1.0,
                    bgnbd_log_likelihood=-1.0, bgnbd_converged=True, n_customers=2,
                    n_repeat_customers=0)
            .returning(fits_t.c.id)
        ).scalar_one()  # fmt: skip
        conn.execute(
            sa.insert(pred_t),
            [{"subject_id": b, "fit_id": fit_id, "computed_at": NOW, "horizon_weeks": 52.0,
              "expected_purchases": 1.0, "p_alive": 0.5, "churn_probability": 0.5,
              "churn_flag": False}],
        )  # fmt: skip
    with engine.connect() as conn:
        before_a = _rows_of(conn, a)
        assert _rows_of(conn, b) == {
            "subject_traits": 1, "loyalty_status": 1, "loyalty_tier_changes": 1,
            "clv_predictions": 1,
        }  # fmt: skip
    clock.advance(days=1)
    link = write_csv(
        tmp_path / "l.csv", [customer(2, email="person1@example.com", phone="", city="")],
        CUSTOMER_HEADER,
    )  # fmt: skip
    assert ingest_file(runtime=rt, kind="customers", path=link, clock=clock).merges == 1
    with engine.connect() as conn:
        assert _rows_of(conn, b) == dict.fromkeys(RECOMPUTED, 0)
        after_a = _rows_of(conn, a)
        assert _orphans(conn) == dict.fromkeys(RECOMPUTED, 0)
    # the survivor keeps its own one-row traits; the history and the prediction it lacked move
    assert after_a == {
        "subject_traits": before_a["subject_traits"],
        "loyalty_status": before_a["loyalty_status"],
        "loyalty_tier_changes": before_a["loyalty_tier_changes"] + 1,
        "clv_predictions": 1,
    }
