"""Retention with an injected clock removes exactly what is past its window, and nothing else."""

from __future__ import annotations

import json
import secrets
import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from cdp.clock import FrozenClock
from cdp.consent import service as consent
from cdp.crypto.normalize import IdentityKind
from cdp.db.models import Subject
from cdp.privacy import retention
from cdp.privacy.erasure import is_tombstoned
from cdp.privacy.models import PrivacyPayload
from cdp.privacy.restriction import restrict
from cdp.privacy.retention import run_retention
from cdp.profiles.merge import merge_subjects
from cdp.profiles.models import Event, Order
from cdp.runtime import Runtime
from tests.conftest import CdpEnv
from tests.factories import make_subject

NOW = datetime(2029, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
EVENTS = Event.__table__  # type: ignore[attr-defined]
ORDERS = Order.__table__  # type: ignore[attr-defined]
SUBJECTS = Subject.__table__  # type: ignore[attr-defined]
PAYLOADS = PrivacyPayload.__table__  # type: ignore[attr-defined]


def _event(rt: Runtime, sid: str, at: datetime) -> str:
    mid = "m-" + secrets.token_hex(6)
    with rt.data_engine.begin() as conn:
        conn.execute(
            sa.insert(EVENTS).values(
                message_id=mid,
                subject_id=sid,
                type="track",
                name="Viewed",
                occurred_at=at,
                received_at=at,
                source="web",
            )
        )
    return mid


def _order(rt: Runtime, sid: str, at: datetime) -> str:
    ref = "o-" + secrets.token_hex(6)
    with rt.data_engine.begin() as conn:
        conn.execute(
            sa.insert(ORDERS).values(
                order_ref=ref,
                subject_id=sid,
                ordered_at=at,
                status="completed",
                currency="EUR",
                total_minor=100,
                discount_minor=0,
                value_base=1.0,
                source="shop",
            )
        )
    return ref


def _age(rt: Runtime, sid: str, at: datetime) -> None:
    with rt.data_engine.begin() as conn:
        conn.execute(
            sa.update(SUBJECTS).where(SUBJECTS.c.id == sid).values(created_at=at, updated_at=at)
        )


def _consent(rt: Runtime, sid: str, purpose: str, status: str, at: datetime) -> None:
    consent.record_consent(
        runtime=rt,
        subject_id=sid,
        purpose=purpose,
        status=status,
        occurred_at=at,
        source="web",
        mechanism="banner",
        recorded_by="cmp",
        clock=lambda: NOW,
    )


def _snapshot(rt: Runtime) -> dict[str, list[tuple[object, ...]]]:
    with rt.data_engine.connect() as conn:
        return {
            t: sorted(map(tuple, conn.execute(sa.text(f"SELECT * FROM {t}"))), key=repr)
            for t in ("subjects", "events", "orders", "privacy_payloads", "identities")
        }


def test_retention_removes_exactly_what_is_past_each_window(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    plain = make_subject(rt)  # analytics only (legitimate interest): 395 days
    personal = make_subject(rt)  # personalization granted: 730 days
    objected = make_subject(rt)  # objected to analytics: no window at all
    inactive = make_subject(rt, identities={IdentityKind.EMAIL: "gone@example.org"})
    restricted = make_subject(rt)

    keep = {
        _event(rt, plain, NOW - 100 * DAY),
        _event(rt, plain, NOW - 395 * DAY),  # exactly on the edge: kept
        _event(rt, personal, NOW - 400 * DAY),
        _event(rt, personal, NOW - 730 * DAY),
        _event(rt, restricted, NOW - 2000 * DAY),
    }
    drop = {
        _event(rt, plain, NOW - 395 * DAY - timedelta(seconds=1)),
        _event(rt, plain, NOW - 800 * DAY),
        _event(rt, personal, NOW - 731 * DAY),
        _event(rt, objected, NOW - 100 * DAY),
        _event(rt, inactive, NOW - 1500 * DAY),
    }
    _consent(rt, personal, "personalization", "granted", NOW - 900 * DAY)
    _consent(rt, objected, "analytics", "withdrawn", NOW - 10 * DAY)
    linked = {_order(rt, plain, NOW - 10 * DAY), _order(rt, plain, NOW - 1095 * DAY)}
    unlinked = {_order(rt, plain, NOW - 1096 * DAY), _order(rt, inactive, NOW - 1500 * DAY)}
    _age(rt, inactive, NOW - 2000 * DAY)
    _age(rt, restricted, NOW - 2000 * DAY)
    with rt.data_engine.begin() as conn:
        restrict(conn=conn, subject_id=restricted, request_id=None, clock=lambda: NOW)
        for kind, age in (("package", 31), ("package", 5), ("corrections", 300)):
            req = "pr_" + secrets.token_hex(12)
            conn.execute(
                sa.text(
                    "INSERT INTO privacy_requests (id, type, status, identity_kind, received_at,"
                    " due_at, requested_by) VALUES (:id, 'access', 'completed', 'email', :t, :t,"
                    " 'dpo')"
                ),
                {"id": req, "t": NOW},
            )
            conn.execute(
                sa.insert(PAYLOADS).values(
                    request_id=req,
                    kind=kind,
                    subject_id=plain,
                    ciphertext=b"x",
                    created_at=NOW - age * DAY,
                )
            )

    before = _snapshot(rt)
    dry = run_retention(runtime=rt, clock=FrozenClock(NOW), dry_run=True)
    assert dry.rows == {"events": 5, "orders": 2}
    assert (dry.packages, dry.inactive_subjects) == (1, 1)
    assert _snapshot(rt) == before  # a dry run changes nothing

    done = run_retention(runtime=rt, clock=FrozenClock(NOW))
    assert done.as_dict() | {"dry_run": True} == dry.as_dict()
    with rt.data_engine.connect() as conn:
        events_left = set(conn.execute(sa.select(EVENTS.c.message_id)).scalars())
        orders = dict(conn.execute(sa.select(ORDERS.c.order_ref, ORDERS.c.subject_id)).all())
        subjects_left = set(conn.execute(sa.select(SUBJECTS.c.id)).scalars())
        kinds = sorted(conn.execute(sa.select(PAYLOADS.c.kind)).scalars())
    assert events_left == keep and not (events_left & drop)
    assert all(orders[r] == plain for r in linked)
    assert all(orders[r] is None for r in unlinked)
    assert subjects_left == {plain, personal, objected, restricted}
    assert kinds == ["corrections", "package"]
    # retention is not a request to be forgotten: the person may come back
    assert not is_tombstoned(runtime=rt, kind="email", raw="gone@example.org")
    # a second run finds nothing more
    again = run_retention(runtime=rt, clock=FrozenClock(NOW))
    assert (again.rows, again.packages, again.inactive_subjects) == ({}, 0, 0)


def test_activity_within_the_period_keeps_a_subject(cdp_env: CdpEnv) -> None:
    rt = cdp_env.runtime
    old = NOW - 2000 * DAY
    by_order, by_event, by_consent, idle = (make_subject(rt) for _ in range(4))
    for sid in (by_order, by_event, by_consent, idle):
        _age(rt, sid, old)
    _order(rt, by_order, NOW - 1000 * DAY)
    _event(rt, by_event, NOW - 30 * DAY)
    _consent(rt, by_consent, "email_marketing", "granted", NOW - 1000 * DAY)
    report = run_retention(runtime=rt, clock=FrozenClock(NOW))
    assert report.inactive_subjects == 1
    with rt.data_engine.connect() as conn:
        left = set(conn.execute(sa.select(SUBJECTS.c.id)).scalars())
    assert left == {by_order, by_event, by_consent}


def test_an_event_past_its_own_window_still_counts_as_activity(cdp_env: CdpEnv) -> None:
    """An event 500 days old is past the analytics window (395 days) but inside the inactivity
    period (1,095 days): the event goes, the person stays. The run used to delete the event
    first and then find the person inactive and erase them, while the dry run said it would
    erase nobody."""
    rt = cdp_env.runtime
    active = make_subject(rt)
    _age(rt, active, NOW - 2000 * DAY)
    _event(rt, active, NOW - 500 * DAY)
    dry = run_retention(runtime=rt, clock=FrozenClock(NOW), dry_run=True)
    real = run_retention(runtime=rt, clock=FrozenClock(NOW))
    assert dry.as_dict() | {"dry_run": False} == real.as_dict()
    assert (real.rows, real.inactive_subjects) == ({"events": 1}, 0)
    with rt.data_engine.connect() as conn:
        assert list(conn.execute(sa.select(SUBJECTS.c.id)).scalars()) == [active]


def test_retention_is_recorded_under_a_name_no_principal_can_take(cdp_env: CdpEnv) -> None:
    """A person named ``retention`` blended in with the job's erasures in activity reports."""
    import pytest

    from cdp.access import principals
    from cdp.audit.writer import LOG
    from cdp.errors import InvalidInputError

    rt = cdp_env.runtime
    idle = make_subject(rt)
    _age(rt, idle, NOW - 2000 * DAY)
    assert run_retention(runtime=rt, clock=FrozenClock(NOW)).inactive_subjects == 1
    with rt.data_engine.connect() as conn:
        names = set(conn.execute(sa.select(LOG.c.principal_name)).scalars())
    assert names == {"system:retention"}
    with pytest.raises(InvalidInputError):
        principals.create(runtime=rt, name="system:retention", roles=["dpo"])


class _StopOnceOneIsGone(threading.Event):
    """A stop event that reads as set once any of ``ids`` has been erased: the signal arriving
    just after the first step of the inactive subjects."""

    def __init__(self, rt: Runtime, ids: list[str]) -> None:
        super().__init__()
        self._rt = rt
        self._ids = ids

    def is_set(self) -> bool:
        with self._rt.data_engine.connect() as conn:
            left = conn.execute(
                sa.select(sa.func.count()).where(SUBJECTS.c.id.in_(self._ids))
            ).scalar_one()
        return bool(left < len(self._ids))


def _retention_deletes(rt: Runtime) -> list[str]:
    with rt.data_engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT subject_ids FROM audit_log WHERE principal_name = 'system:retention'"
                " AND action = 'delete' ORDER BY seq"
            )
        ).scalars()
        return [sid for row in rows for sid in json.loads(row)]


def test_a_stopped_run_ends_between_two_steps_and_the_next_one_finishes(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``cdp serve`` stopping sets ``stop``: retention stops between two of its steps, each
    complete (an erased slice was audited, nothing else was), and the next run does the rest."""
    rt = cdp_env.runtime
    idle = sorted(make_subject(rt) for _ in range(3))
    for sid in idle:
        _age(rt, sid, NOW - 2000 * DAY)
    stopped = threading.Event()
    stopped.set()
    assert run_retention(runtime=rt, clock=FrozenClock(NOW), stop=stopped).as_dict() == {
        "now": NOW.isoformat(),
        "dry_run": False,
        "rows": {},
        "packages": 0,
        "export_files": 0,
        "inactive_subjects": 0,
        "stopped": True,
    }
    monkeypatch.setattr(retention, "AUDIT_BATCH", 1)  # one subject a step
    first = run_retention(runtime=rt, clock=FrozenClock(NOW), stop=_StopOnceOneIsGone(rt, idle))
    assert (first.stopped, first.inactive_subjects) == (True, 1)
    with rt.data_engine.connect() as conn:
        left = set(conn.execute(sa.select(SUBJECTS.c.id)).scalars())
    [gone] = set(idle) - left
    assert _retention_deletes(rt) == [gone]  # audited exactly what was erased
    rest = run_retention(runtime=rt, clock=FrozenClock(NOW), stop=threading.Event())
    assert (rest.stopped, rest.inactive_subjects) == (False, 2)
    assert sorted(_retention_deletes(rt)) == idle


def _left(rt: Runtime) -> set[str]:
    with rt.data_engine.connect() as conn:
        return set(conn.execute(sa.select(SUBJECTS.c.id)).scalars())


def test_a_subject_active_since_the_list_was_made_is_kept(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The inactive list is made first and erased slice by slice (a large run takes minutes):
    an order that arrives meanwhile makes its customer active, and they stay."""
    rt = cdp_env.runtime
    buyer, idle = make_subject(rt, {"email": "ordered.late@example.com"}), make_subject(rt)
    for sid in (buyer, idle):
        _age(rt, sid, NOW - 2000 * DAY)
    listed = retention.inactive_subjects

    def list_then_order(conn: sa.Connection, cutoff: datetime, among: object = None) -> object:
        found = listed(conn, cutoff, among)  # type: ignore[arg-type]
        if among is None:  # the run's list: both are inactive now; then the buyer orders
            assert set(found) == {buyer, idle}
            with rt.data_engine.begin() as other:  # another door, while the run goes on
                other.execute(
                    sa.insert(ORDERS).values(
                        order_ref="late",
                        subject_id=buyer,
                        ordered_at=NOW - DAY,
                        status="completed",
                        currency="EUR",
                        total_minor=100,
                        discount_minor=0,
                        value_base=1.0,
                        source="shop",
                    )
                )
        return found

    monkeypatch.setattr(retention, "inactive_subjects", list_then_order)
    report = run_retention(runtime=rt, clock=FrozenClock(NOW))
    assert report.inactive_subjects == 1
    assert _left(rt) == {buyer}


def test_an_inactive_subject_merged_into_an_active_one_does_not_take_it_along(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An erasure follows an id merged away to the subject holding it now (a request names the
    person); retention must not: the survivor is a customer nobody judged inactive."""
    rt = cdp_env.runtime
    active = make_subject(rt, {"email": "still.buying@example.com"})
    idle = make_subject(rt, {"email": "old.account@example.com"})
    _age(rt, idle, NOW - 2000 * DAY)
    _order(rt, active, NOW - 10 * DAY)
    erase = retention.erase_subjects

    def merge_then_erase(**kwargs: object) -> object:
        # the idle account is linked to the active customer (same email, say) just now
        with rt.data_engine.begin() as conn:
            merge_subjects(
                runtime=rt, conn=conn, survivor=active, absorbed=idle, linked_by="email", now=NOW
            )
        return erase(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(retention, "erase_subjects", merge_then_erase)
    run_retention(runtime=rt, clock=FrozenClock(NOW))
    assert _left(rt) == {active}
    view = rt.vault.cipher(active)  # the survivor's key is intact
    assert view.subject_id == active
    with rt.data_engine.connect() as conn:
        assert (
            conn.execute(
                sa.select(sa.func.count()).select_from(ORDERS).where(ORDERS.c.subject_id == active)
            ).scalar_one()
            == 1
        )


class _StopOnceAnEventIsGone(threading.Event):
    """A stop event that reads as set once fewer than ``count`` events are left: the signal
    arriving just after the first batch of a window."""

    def __init__(self, rt: Runtime, count: int) -> None:
        super().__init__()
        self._rt = rt
        self._count = count

    def is_set(self) -> bool:
        with self._rt.data_engine.connect() as conn:
            left = conn.execute(sa.select(sa.func.count()).select_from(EVENTS)).scalar_one()
        return bool(left < self._count)


def test_a_window_is_treated_in_batches_and_a_stop_between_two_is_taken(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A window longer than a batch is treated whole over several transactions (lowest ids
    first); a stop between two batches ends the run with the finished batches counted, and the
    next run treats the rest."""
    rt = cdp_env.runtime
    sid = make_subject(rt)
    _order(rt, sid, NOW - 10 * DAY)  # active: only its old events go
    old = [_event(rt, sid, NOW - 500 * DAY) for _ in range(5)]
    recent = _event(rt, sid, NOW - 10 * DAY)
    monkeypatch.setattr(retention, "WINDOW_BATCH", 2)

    def left() -> set[str]:
        with rt.data_engine.connect() as conn:
            return set(conn.execute(sa.select(EVENTS.c.message_id)).scalars())

    first = run_retention(runtime=rt, clock=FrozenClock(NOW), stop=_StopOnceAnEventIsGone(rt, 6))
    assert (first.stopped, first.rows) == (True, {"events": 2})
    assert len(left() & set(old)) == 3
    rest = run_retention(runtime=rt, clock=FrozenClock(NOW), stop=threading.Event())
    assert (rest.stopped, rest.rows) == (False, {"events": 3})
    assert left() == {recent}


def test_the_points_ledger_links_are_indexed(cdp_env: CdpEnv) -> None:
    """Deleting an order or an event nulls the ledger lines that refer to it: each link has an
    index led by it, so a delete probes the ledger instead of scanning it."""
    indexes = sa.inspect(cdp_env.runtime.data_engine).get_indexes("points_ledger")
    leading = {ix["column_names"][0] for ix in indexes}
    assert {"order_id", "event_id"} <= leading
