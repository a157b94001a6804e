"""Two writers changing different fields of one subject at once: neither change is lost.

A subject's fields live in one sealed row, so every writer rewrites the whole row. The second
writer must read the row after the first commits (SQLite: the write lock taken at BEGIN;
PostgreSQL: the row read FOR UPDATE), or it would write back the first one's field as it was.
"""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa

from cdp.clock import utcnow
from cdp.privacy.rectification import rectify
from tests.conftest import CdpEnv
from tests.factories import make_subject, read_pii


def _waiting_on_a_lock(env: CdpEnv) -> bool:
    if env.backend != "postgresql":
        return True  # SQLite: the second BEGIN IMMEDIATE waits; nothing to observe from here
    with env.runtime.data_engine.connect() as conn:
        waiting = conn.execute(sa.text("SELECT count(*) FROM pg_locks WHERE NOT granted"))
        return bool(waiting.scalar_one())


def test_concurrent_corrections_of_different_fields_both_stay(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    sid = make_subject(rt, {"first_name": "Ana", "city": "Porto", "email": "ana@example.com"})
    second_done = threading.Event()
    errors: list[BaseException] = []

    def second() -> None:
        try:
            with rt.data_engine.begin() as conn:
                rectify(runtime=rt, conn=conn, subject_id=sid, corrections={"city": "Braga"},
                        now=utcnow())  # fmt: skip
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            second_done.set()

    with rt.data_engine.begin() as conn:
        rectify(runtime=rt, conn=conn, subject_id=sid, corrections={"first_name": "Anna"},
                now=utcnow())  # fmt: skip
        worker = threading.Thread(target=second)
        worker.start()
        deadline = time.monotonic() + 10
        while not _waiting_on_a_lock(cdp_env) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        assert not second_done.is_set()  # it waits for this transaction
    worker.join(30)
    assert not errors
    values = rt.vault.decrypt_fields(sid, read_pii(rt, sid))
    assert values == {"first_name": "Anna", "city": "Braga", "email": "ana@example.com"}
