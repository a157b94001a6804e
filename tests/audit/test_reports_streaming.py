"""Compliance reports stream the period's records: they keep the listed records and running
aggregates, never the whole period (a 300,000-record period took ~350 MB). Their content is the
content of the earlier reports, which kept every record in a list: that implementation is kept
here as the reference, and both are compared on a fixed log and on generated ones."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import astuple
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp.access.engine import get_policy_engine
from cdp.access.vocabulary import ACTIONS, RESOURCES
from cdp.audit import activity_reports, anomaly_report, reports
from cdp.audit.render import render
from cdp.audit.reports import Access, Report
from cdp.audit.writer import LOG, SUBJECTS, AuditEntry, append
from cdp.clock import FrozenClock
from tests.audit.factories import guards_off, make_entry
from tests.conftest import CdpEnv

T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)
SUBJECTS_POOL = tuple(f"{n:032x}" for n in range(1, 9))
PRINCIPALS = (
    ("sam", ("support",), "support"),
    ("ana", ("analyst",), "analytics"),
    ("dee", ("dpo", "support"), "privacy_request"),
    ("mia", ("marketer",), "email_marketing"),
)


# ------------------------------------------------------------------ the reference (kept as was)


def _everything(env: CdpEnv, query: sa.Select[tuple[object, ...]]) -> list[Access]:
    with env.runtime.data_engine.connect() as conn:
        return [reports._access(row) for row in conn.execute(query)]


def _collect(report: Report, rows: Iterator[Access]) -> list[Access]:
    days: Counter[date] = Counter()
    everything: list[Access] = []
    for a in rows:
        everything.append(a)
        if a.outcome == "allowed":
            days[a.at.astimezone(UTC).date()] += 1
    report.total = len(everything)
    report.accesses = everything[: reports.LISTED_MAX]
    report.truncated = len(everything) > reports.LISTED_MAX
    if days:
        first, last = min(days), max(days)
        report.per_day = [
            (first + timedelta(days=i), days.get(first + timedelta(days=i), 0))
            for i in range((last - first).days + 1)
        ]
    return everything


def _count(rows: list[Access], key: Callable[[Access], str]) -> list[tuple[str, int]]:
    return Counter(key(a) for a in rows).most_common()


def _bursts(rows: list[Access]) -> list[dict[str, str]]:
    by_principal: dict[str, list[Access]] = defaultdict(list)
    for a in rows:
        if a.outcome == "allowed":
            by_principal[a.principal].append(a)
    found: list[dict[str, str]] = []
    for name, items in by_principal.items():
        left = 0
        flagged_until: datetime | None = None
        for right, a in enumerate(items):
            while a.at - items[left].at > anomaly_report.BURST_WINDOW:
                left += 1
            if right - left + 1 > anomaly_report.BURST_THRESHOLD and (
                flagged_until is None or a.at > flagged_until
            ):
                flagged_until = items[left].at + anomaly_report.BURST_WINDOW
                found.append(
                    {
                        "kind": "burst",
                        "principal": name,
                        "at": items[left].at.isoformat(timespec="seconds"),
                        "detail": f"more than {anomaly_report.BURST_THRESHOLD} reads within "
                        f"{int(anomaly_report.BURST_WINDOW.total_seconds() // 60)} minutes",
                    }
                )
    return found


def _unusual_purposes(rows: list[Access]) -> list[dict[str, str]]:
    engine = get_policy_engine()
    by_role: dict[str, Counter[str]] = defaultdict(Counter)
    for a in rows:
        by_role[a.roles][a.purpose] += 1
    found: list[dict[str, str]] = []
    for roles, purposes in sorted(by_role.items()):
        role_tuple = tuple(r for r in roles.split(",") if r)
        if role_tuple == ("system",):
            continue
        total = sum(purposes.values())
        for purpose, n in sorted(purposes.items()):
            granted = any(
                engine.decide(role_tuple, resource, action, purpose).allowed
                for resource in RESOURCES
                for action in ACTIONS
            )
            rare = (
                total >= anomaly_report.RARE_MIN_RECORDS and n / total < anomaly_report.RARE_SHARE
            )
            if not granted or rare:
                why = (
                    "the policy allows this role nothing for this purpose"
                    if not granted
                    else (f"{n} of {total} records ({n / total:.1%})")
                )
                found.append(
                    {
                        "kind": "unusual purpose",
                        "principal": f"role {roles}",
                        "at": purpose,
                        "detail": why,
                    }
                )
    return found


def _reference(env: CdpEnv, kind: str, param: str, start: datetime, end: datetime) -> Report:
    if kind == "subject-access":
        report = Report("subject-access", "Subject access report", T0, start, end, {})
        query = (
            sa.select(LOG)
            .join(SUBJECTS, SUBJECTS.c.seq == LOG.c.seq)
            .where(SUBJECTS.c.subject_id == param, LOG.c.at >= start, LOG.c.at <= end)
            .order_by(LOG.c.seq)
        )
        rows = _collect(report, iter(_everything(env, query)))
        report.counts = {
            "principal": _count(rows, lambda a: a.principal),
            "purpose": _count(rows, lambda a: a.purpose),
            "field": Counter(
                f for a in rows if a.outcome == "allowed" for f in a.fields
            ).most_common(),
            "outcome": _count(rows, lambda a: a.outcome),
        }
        return report
    if kind == "principal-activity":
        report = Report("principal-activity", "Principal activity report", T0, start, end, {})
        query = (
            sa.select(LOG)
            .where(LOG.c.principal_name == param, LOG.c.at >= start, LOG.c.at <= end)
            .order_by(LOG.c.seq)
        )
        rows = _collect(report, iter(_everything(env, query)))
        report.counts = {
            "action": _count(rows, lambda a: f"{a.action} {a.resource}"),
            "purpose": _count(rows, lambda a: a.purpose),
            "outcome": _count(rows, lambda a: a.outcome),
            "subjects": [("distinct subjects", len({s for a in rows for s in a.subject_ids}))],
        }
        return report
    report = Report("denied-anomalies", "Denied access and anomaly report", T0, start, end, {})
    query = sa.select(LOG).where(LOG.c.at >= start, LOG.c.at <= end).order_by(LOG.c.seq)
    everything = _everything(env, query)
    denied = [a for a in everything if a.outcome != "allowed"]
    _collect(report, iter(denied))
    days: Counter[date] = Counter(
        a.at.astimezone(UTC).date() for a in everything if a.outcome == "allowed"
    )
    report.per_day = sorted(days.items())
    report.counts = {
        "denied by principal": _count(
            [a for a in denied if a.outcome == "denied"], lambda a: a.principal
        ),
        "denied by resource": _count(
            [a for a in denied if a.outcome == "denied"], lambda a: a.resource
        ),
        "errors by resource": _count(
            [a for a in denied if a.outcome == "error"], lambda a: a.resource
        ),
    }
    report.anomalies = _bursts(everything) + _unusual_purposes(everything)
    return report


# ------------------------------------------------------------------ comparing


def _streamed(env: CdpEnv, kind: str, param: str, start: datetime, end: datetime) -> Report:
    clock = FrozenClock(T0)
    rt = env.runtime
    if kind == "subject-access":
        report = activity_reports.subject_access(
            runtime=rt, subject_id=param, since=start, until=end, clock=clock
        )
        report.recipients = None  # the exports' ledger: not part of the reference
    elif kind == "principal-activity":
        report = activity_reports.principal_activity(
            runtime=rt, principal=param, since=start, until=end, clock=clock
        )
    else:
        report = anomaly_report.denied_anomalies(runtime=rt, since=start, until=end, clock=clock)
    report.params = {}
    return report


def _same(env: CdpEnv, start: datetime, end: datetime) -> None:
    """Every report of the log in ``[start, end]``: the streamed one equals the reference, field
    by field and rendered in every format."""
    cases = [("denied-anomalies", "")]
    cases += [("principal-activity", name) for name, _, _ in PRINCIPALS]
    cases += [("subject-access", sid) for sid in SUBJECTS_POOL[:4]]
    for kind, param in cases:
        new = _streamed(env, kind, param, start, end)
        old = _reference(env, kind, param, start, end)
        assert [astuple(a) for a in new.accesses] == [astuple(a) for a in old.accesses], kind
        assert (new.total, new.truncated) == (old.total, old.truncated), (kind, param)
        assert new.per_day == old.per_day, (kind, param)
        assert new.counts == old.counts, (kind, param)
        assert new.anomalies == old.anomalies, (kind, param)
        for fmt in ("md", "html", "csv"):
            assert render(new, fmt) == render(old, fmt), (kind, param, fmt)


def _entry(n: int, who: int, outcome: str, subjects: tuple[str, ...], **kw: str) -> AuditEntry:
    name, roles, purpose = PRINCIPALS[who]
    return AuditEntry(
        principal_id=f"{who:016x}",
        principal_name=name,
        roles=roles,
        action=kw.get("action", "read"),
        resource=kw.get("resource", "profile"),
        subject_ids=subjects,
        fields=("email", "phone") if outcome == "allowed" else (),
        purpose=kw.get("purpose", purpose),
        outcome=outcome,
        request_id=f"r{n}",
        client="127.0.0.1",
    )


def _write(env: CdpEnv, entries: list[AuditEntry], times: list[datetime]) -> None:
    moments = iter(times)
    with env.runtime.data_engine.begin() as conn:
        append(conn, entries, clock=lambda: next(moments))


def _clear(env: CdpEnv) -> None:
    with env.runtime.data_engine.begin() as conn, guards_off(conn, env.backend):
        for table in ("audit_subjects", "audit_log", "audit_head"):
            conn.exec_driver_sql(f"DELETE FROM {table}")


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small thresholds, so a small log has bursts, long bursts and truncated listings."""
    monkeypatch.setattr(reports, "LISTED_MAX", 5)
    monkeypatch.setattr(anomaly_report, "BURST_THRESHOLD", 4)
    monkeypatch.setattr(anomaly_report, "RARE_MIN_RECORDS", 6)


def test_reports_are_those_of_the_reference_on_a_fixed_log(cdp_env: CdpEnv, small: None) -> None:
    entries: list[AuditEntry] = []
    times: list[datetime] = []
    at = T0
    n = 0

    def add(who: int, outcome: str, step: timedelta, subjects: tuple[str, ...], **kw: str) -> None:
        nonlocal at, n
        at += step
        n += 1
        entries.append(_entry(n, who, outcome, subjects, **kw))
        times.append(at)

    for day in range(4):  # a day without reads in the middle
        if day == 2:
            at += timedelta(days=1)
            continue
        for i in range(3 + day):
            add(i % 3, "allowed", timedelta(minutes=7), SUBJECTS_POOL[i % 4 : i % 4 + 2])
        add(1, "denied", timedelta(seconds=30), (SUBJECTS_POOL[0],), resource="pii:contact")
        add(2, "error", timedelta(seconds=5), (SUBJECTS_POOL[1],))
        at += timedelta(days=1)
    for i in range(40):  # one long burst (flagged again after its window) and another principal
        add(0, "allowed", timedelta(seconds=20), (SUBJECTS_POOL[i % 8],))
        if i % 5 == 0:
            add(3, "allowed", timedelta(seconds=1), SUBJECTS_POOL, action="export")
    add(0, "allowed", timedelta(minutes=1), (), purpose="marketing")  # no data access for it
    add(1, "denied", timedelta(minutes=1), (), resource="segments", purpose="support")
    _write(cdp_env, entries, times)
    report = anomaly_report.denied_anomalies(runtime=cdp_env.runtime, since=T0, until=at)
    bursts = [(a["principal"], a["at"]) for a in report.anomalies if a["kind"] == "burst"]
    assert [p for p, _ in bursts].count("sam") >= 2 and report.truncated
    assert any(a["kind"] == "unusual purpose" for a in report.anomalies)
    _same(cdp_env, T0, at + timedelta(days=1))
    _same(cdp_env, T0 + timedelta(days=1, hours=1), at - timedelta(minutes=5))


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    log=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=len(PRINCIPALS) - 1),
            st.sampled_from(("allowed", "allowed", "allowed", "denied", "error")),
            st.integers(min_value=0, max_value=900),  # seconds since the record before
            st.lists(st.sampled_from(SUBJECTS_POOL), max_size=3, unique=True),
            st.sampled_from((None, "support", "marketing", "analytics")),
        ),
        max_size=60,
    ),
    cut=st.integers(min_value=0, max_value=3600),
)
def test_reports_are_those_of_the_reference_on_any_log(
    cdp_env: CdpEnv,
    small: None,
    log: list[tuple[int, str, int, list[str], str | None]],
    cut: int,
) -> None:
    _clear(cdp_env)
    entries: list[AuditEntry] = []
    times: list[datetime] = []
    at = T0
    for n, (who, outcome, step, subjects, purpose) in enumerate(log):
        at += timedelta(seconds=step)
        extra = {"purpose": purpose} if purpose else {}
        entries.append(_entry(n, who, outcome, tuple(subjects), **extra))
        times.append(at)
    if entries:
        _write(cdp_env, entries, times)
    _same(cdp_env, T0, at + timedelta(seconds=1))
    _same(cdp_env, min(T0 + timedelta(seconds=cut), at), at)


def test_a_report_reads_its_rows_in_batches(cdp_env: CdpEnv) -> None:
    """The period's rows come from a streaming cursor (a server-side one on PostgreSQL)."""
    options: list[dict[str, object]] = []
    engine = cdp_env.runtime.data_engine

    @sa.event.listens_for(engine, "before_cursor_execute")
    def seen(conn: sa.Connection, *_: object) -> None:
        options.append(dict(conn.get_execution_options()))

    try:
        anomaly_report.denied_anomalies(
            runtime=cdp_env.runtime, since=T0, until=T0 + timedelta(days=1)
        )
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    assert any(o.get("stream_results") and o.get("yield_per") for o in options)


def test_distinct_subjects_counts_each_subject_once(cdp_env: CdpEnv) -> None:
    entries = [_entry(n, 3, "allowed", SUBJECTS_POOL[n : n + 3], action="export") for n in range(5)]
    _write(cdp_env, entries, [T0 + timedelta(minutes=n) for n in range(5)])
    report = activity_reports.principal_activity(
        runtime=cdp_env.runtime, principal="mia", since=T0, until=T0 + timedelta(hours=1)
    )
    assert report.counts["subjects"] == [("distinct subjects", 7)]
    assert json.loads(json.dumps(report.counts["action"])) == [["export profile", 5]]


@pytest.mark.parametrize("kind", ["denied-anomalies", "principal-activity", "subject-access"])
def test_a_reports_memory_does_not_grow_with_its_period(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """The same log, a period of 6,000 records and one of 24,000: the report of the longer one
    takes no more memory (it took ~1.1 KB more a record when every record was kept)."""
    import tracemalloc

    monkeypatch.setattr(reports, "LISTED_MAX", 100)
    monkeypatch.setattr(anomaly_report, "BURSTS_LISTED_MAX", 100)
    sid = SUBJECTS_POOL[0]
    step = timedelta(seconds=1)
    for chunk in range(4):
        entries = [
            _entry(n, 0, "denied" if n % 10 == 0 else "allowed", (sid,))
            for n in range(chunk * 6000, (chunk + 1) * 6000)
        ]
        _write(cdp_env, entries, [T0 + step * e for e in range(chunk * 6000, (chunk + 1) * 6000)])
    peaks = []
    for until in (T0 + step * 5999, T0 + step * 23999):
        tracemalloc.start()
        try:
            if kind == "denied-anomalies":
                report = anomaly_report.denied_anomalies(
                    runtime=cdp_env.runtime, since=T0, until=until
                )
            elif kind == "principal-activity":
                report = activity_reports.principal_activity(
                    runtime=cdp_env.runtime, principal="sam", since=T0, until=until
                )
            else:
                report = activity_reports.subject_access(
                    runtime=cdp_env.runtime, subject_id=sid, since=T0, until=until
                )
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert report.total in (600, 2400, 6000, 24000)
    assert peaks[1] - peaks[0] < 2_000_000, peaks


def test_bursts_past_the_cap_are_counted_in_a_note(
    cdp_env: CdpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A principal reading without a pause is flagged again each time the window of its last
    burst has passed: a report lists the first bursts and counts the others."""
    monkeypatch.setattr(anomaly_report, "BURST_THRESHOLD", 3)
    monkeypatch.setattr(anomaly_report, "BURSTS_LISTED_MAX", 4)
    entries = [_entry(n, 0, "allowed", ()) for n in range(30)]
    _write(cdp_env, entries, [T0 + timedelta(minutes=2 * n) for n in range(30)])
    until = T0 + timedelta(days=1)
    old = _reference(cdp_env, "denied-anomalies", "", T0, until)
    everything = [a for a in old.anomalies if a["kind"] == "burst"]
    assert len(everything) > 4
    new = anomaly_report.denied_anomalies(runtime=cdp_env.runtime, since=T0, until=until)
    assert [a for a in new.anomalies if a["kind"] == "burst"] == everything[:4]
    note = f"{len(everything) - 4} more bursts were found and are not listed (the first 4 are)."
    assert new.notes == [note]
    assert f"> {note}" in render(new, "md") and note in render(new, "html")


def test_a_purpose_the_role_uses_outside_personal_data_is_not_unusual(cdp_env: CdpEnv) -> None:
    """An auditor reads the log for ``audit`` and a marketer exports for ``email_marketing``:
    the policy allows both, though neither is a read of personal data. Only a purpose the
    policy allows the role nothing for is flagged; cdp's own records (role ``system``: an
    operator's command, retention) never are."""
    usual = [
        make_entry(roles=("auditor",), resource="audit", fields=(), purpose="audit"),
        make_entry(
            roles=("marketer",), action="export", resource="segments", purpose="email_marketing"
        ),
        make_entry(
            roles=("marketer",), action="export", resource="segments", purpose="ad_audiences"
        ),
        # cdp's own records: the operator's commands and retention, purpose fixed by cdp
        make_entry(roles=("system",), action="create", resource="principals", purpose="operations"),
        make_entry(roles=("system",), action="delete", resource="events", purpose="operations"),
    ]
    odd = make_entry(roles=("auditor",), resource="audit", fields=(), purpose="email_marketing")
    entries = [*usual, odd]
    _write(cdp_env, entries, [T0 + timedelta(seconds=i) for i in range(len(entries))])
    report = anomaly_report.denied_anomalies(
        runtime=cdp_env.runtime, since=T0, until=T0 + timedelta(days=1)
    )
    unusual = [
        (a["principal"], a["at"]) for a in report.anomalies if a["kind"] == "unusual purpose"
    ]
    assert unusual == [("role auditor", "email_marketing")]
