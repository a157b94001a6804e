"""The activity reports: who read one subject's data (``subject-access``) and what one principal
did (``principal-activity``), listed and counted from the audit log."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime

import sqlalchemy as sa

from cdp.audit.reports import Listing, Report, day, every_day, scalar, stream, window
from cdp.audit.writer import LOG, SUBJECTS
from cdp.clock import Clock, utcnow
from cdp.profiles.former_ids import person_ids
from cdp.runtime import Runtime


def subject_access(
    *,
    runtime: Runtime,
    subject_id: str,
    since: datetime | None = None,
    until: datetime | None = None,
    clock: Clock = utcnow,
) -> Report:
    """Who read ``subject_id``'s data (under any id it had) in the period, and who received it."""
    start, end = window(since, until, clock)

    with runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        ids = person_ids(conn, subject_id)
    params = {"subject_id": subject_id}
    if len(ids) > 1:
        params["former_ids"] = ", ".join(ids[1:])
    report = Report("subject-access", "Subject access report", clock(), start, end, params)
    naming = sa.select(SUBJECTS.c.seq).where(SUBJECTS.c.subject_id.in_(ids))
    query = (
        sa.select(LOG)
        .where(LOG.c.seq.in_(naming), LOG.c.at >= start, LOG.c.at <= end)
        .order_by(LOG.c.seq)
    )
    listing = Listing()
    days: Counter[date] = Counter()
    principals: Counter[str] = Counter()
    purposes: Counter[str] = Counter()
    fields: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    for row in stream(runtime, query):
        listing.add(row)
        principals[row.principal_name] += 1
        purposes[row.purpose] += 1
        outcomes[row.outcome] += 1
        if row.outcome == "allowed":
            days[day(row.at)] += 1
            fields.update(json.loads(row.fields))
    listing.into(report)
    report.per_day = every_day(days)
    report.counts = {
        "principal": principals.most_common(),
        "purpose": purposes.most_common(),
        "field": fields.most_common(),
        "outcome": outcomes.most_common(),
    }
    from cdp.exports.ledger import disclosures  # exports record who received what

    report.recipients = disclosures(runtime, ids, start, end)
    return report


def principal_activity(
    *,
    runtime: Runtime,
    principal: str,
    since: datetime | None = None,
    until: datetime | None = None,
    clock: Clock = utcnow,
) -> Report:
    """Everything the principal named ``principal`` did in the period."""
    start, end = window(since, until, clock)
    report = Report(
        "principal-activity",
        "Principal activity report",
        clock(),
        start,
        end,
        {"principal": principal},
    )
    where = (LOG.c.principal_name == principal, LOG.c.at >= start, LOG.c.at <= end)
    listing = Listing()
    days: Counter[date] = Counter()
    actions: Counter[str] = Counter()
    purposes: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    for row in stream(runtime, sa.select(LOG).where(*where).order_by(LOG.c.seq)):
        listing.add(row)
        actions[f"{row.action} {row.resource}"] += 1
        purposes[row.purpose] += 1
        outcomes[row.outcome] += 1
        if row.outcome == "allowed":
            days[day(row.at)] += 1
    listing.into(report)
    report.per_day = every_day(days)
    report.counts = {
        "action": actions.most_common(),
        "purpose": purposes.most_common(),
        "outcome": outcomes.most_common(),
        "subjects": [("distinct subjects", _distinct_subjects(runtime, where))],
    }
    return report


def _distinct_subjects(runtime: Runtime, where: tuple[sa.ColumnElement[bool], ...]) -> int:
    """How many distinct subjects the records matching ``where`` name, counted by the database
    from the records' own ``subject_ids`` (an export's record names thousands: a set of them in
    Python would grow with the period)."""
    if runtime.data_engine.dialect.name == "postgresql":
        ids = sa.func.json_array_elements_text(sa.cast(LOG.c.subject_ids, sa.JSON))
    else:
        ids = sa.func.json_each(LOG.c.subject_ids)
    each = ids.table_valued("value").alias("each_subject")
    query = (
        sa.select(sa.func.count(sa.distinct(each.c.value)))
        .select_from(LOG)
        .join(each, sa.true())
        .where(*where)
    )
    return int(scalar(runtime, query))
