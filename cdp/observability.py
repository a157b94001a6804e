"""Prometheus metrics: the few counters and histograms an operator watches, and one call each.

Modules record with a one-line call (``observe_request``, ``count_ingest``, ``audit_write_timer``,
``count_export``, ``count_limited``); ``GET /metrics`` (:mod:`cdp.api.ops`) renders them.

Labels never carry personal data or ids: routes are path *templates*
(``/v1/profiles/{subject_id}``); sources and destinations are not labels at all (their number is
unbounded), only kinds and outcomes.

Workers: by default each process keeps its own numbers, so behind ``--workers N`` a scrape sees
one worker's share. Set ``PROMETHEUS_MULTIPROC_DIR`` to an empty, writable directory before cdp
starts (every worker inherits it) and the numbers are shared through files there and summed at
scrape time (prometheus-client's multiprocess mode; counters and histograms only, which is all
cdp uses). Empty the directory when the service restarts.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final, ParamSpec, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"

P = ParamSpec("P")
R = TypeVar("R")

HTTP_REQUESTS: Final = Counter(
    "cdp_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ("method", "route", "status"),
)
HTTP_LATENCY: Final = Histogram(
    "cdp_http_request_duration_seconds",
    "Time from request to the end of the response, by method and route template.",
    ("method", "route"),
)
HTTP_LIMITED: Final = Counter(
    "cdp_http_limited",
    "Requests refused by a limit: body_too_large (413), rate_principal and rate_source (429), "
    "deadline (504).",
    ("reason",),
)
INGEST_RECORDS: Final = Counter(
    "cdp_ingest_records",
    "Records received by ingestion, by channel (file, http), record kind and outcome "
    "(accepted, rejected, duplicate, expired: past every retention window on arrival).",
    ("channel", "kind", "outcome"),
)
AUDIT_WRITE: Final = Histogram(
    "cdp_audit_write_duration_seconds",
    "Time to append records to the audit chain (lock the head, hash, insert), by outcome.",
    ("outcome",),
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
EXPORT_RUNS: Final = Counter(
    "cdp_export_runs",
    "Export runs, by outcome (succeeded, partial, failed, refused, removes_only).",
    ("outcome",),
)
EXPORT_ROWS: Final = Counter("cdp_export_rows", "Subjects sent by export runs.")


_REQUEST_SERIES: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
"""The labelled children of (method, route, status): ``labels()`` checks and joins its values on
every call. Bounded: methods (:func:`method_label`), route templates and status codes are
finite."""


HTTP_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
"""The methods counted under their own name; any other token a client sends (HTTP lets a
request line carry any) is counted as ``other``, so no caller can grow the label set."""


def method_label(method: str) -> str:
    """``method`` as the metrics and the request log name it: a standard method, or ``other``."""
    return method if method in HTTP_METHODS else "other"


def observe_request(*, method: str, route: str, status: int, seconds: float) -> None:
    """One answered HTTP request (``route`` is the matched template or ``unmatched``; ``method``
    as :func:`method_label` gives it, which the request middleware applies once for this and
    its log line)."""
    key = (method, route, status)
    series = _REQUEST_SERIES.get(key)
    if series is None:
        series = _REQUEST_SERIES[key] = (
            HTTP_REQUESTS.labels(method, route, str(status)),
            HTTP_LATENCY.labels(method, route),
        )
    series[0].inc()
    series[1].observe(seconds)


def count_limited(*, reason: str) -> None:
    """A request refused by a limit (see ``HTTP_LIMITED`` for the reasons)."""
    HTTP_LIMITED.labels(reason).inc()


def count_ingest(
    *,
    channel: str,
    kind: str,
    accepted: int,
    rejected: int,
    duplicates: int = 0,
    expired: int = 0,
) -> None:
    """Records of one ingestion batch or request: stored (inserted or updated), refused, replays
    recognised as already stored, and records past every retention window when they arrived
    (events not stored, orders stored unlinked)."""
    counts = (
        ("accepted", accepted),
        ("rejected", rejected),
        ("duplicate", duplicates),
        ("expired", expired),
    )
    for outcome, n in counts:
        if n:
            INGEST_RECORDS.labels(channel, kind, outcome).inc(n)


@contextmanager
def audit_write_timer() -> Iterator[None]:
    """Time an audit append; the outcome is ``error`` when the block raises."""
    started = time.perf_counter()
    outcome = "error"
    try:
        yield
        outcome = "ok"
    finally:
        AUDIT_WRITE.labels(outcome).observe(time.perf_counter() - started)


def timed_audit_write(func: Callable[P, R]) -> Callable[P, R]:
    """Decorator form of :func:`audit_write_timer` (for the audit chain's append)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with audit_write_timer():
            return func(*args, **kwargs)

    return wrapper


def count_export(*, outcome: str, rows: int = 0) -> None:
    """One export run and how many subjects it sent."""
    EXPORT_RUNS.labels(outcome).inc()
    if rows:
        EXPORT_ROWS.inc(rows)


def render() -> tuple[bytes, str]:
    """The exposition text and its content type: this process's metrics, or every worker's
    when ``PROMETHEUS_MULTIPROC_DIR`` is set."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
