"""Restriction of processing (GDPR art. 18): while a restriction is open, the subject's data is
only stored — no exports, no marketing traits, no segment membership sent anywhere.

Restrictions are per request: each restriction request opens its own row and lifting it closes
only that row, so a subject asked to be restricted twice stays restricted until both are lifted.

Other modules check it in one of two ways:

- :func:`is_restricted` for one subject (a single send, a single trait computation);
- :func:`not_restricted_condition` inside SQL, correlated on the outer query's subject-id column
  (exports and trait jobs filter many subjects in one query).
  :func:`cdp.consent.ledger_state.eligible_condition` already combines it with the consent check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cdp.clock import Clock, utcnow
from cdp.privacy.models import Restriction

if TYPE_CHECKING:
    from cdp.runtime import Runtime

_R = Restriction.__table__  # type: ignore[attr-defined]


def not_restricted_condition(subject_col: Any) -> sa.ColumnElement[bool]:
    """SQL condition: the subject in ``subject_col`` has no open restriction."""
    return ~(
        sa.select(sa.literal(1))
        .where(_R.c.subject_id == subject_col, _R.c.lifted_at.is_(None))
        .exists()
    )


def restricted_subjects() -> sa.Select[tuple[str]]:
    """A selectable of the ids of subjects under an open restriction."""
    return sa.select(_R.c.subject_id).where(_R.c.lifted_at.is_(None)).distinct()


def is_restricted(
    *, conn: Connection | None = None, runtime: Runtime | None = None, subject_id: str
) -> bool:
    """Whether the subject's processing is restricted now."""
    query = sa.select(sa.literal(1)).where(_R.c.subject_id == subject_id, _R.c.lifted_at.is_(None))
    if conn is not None:
        return conn.execute(query).first() is not None
    if runtime is None:
        raise TypeError("pass conn= or runtime=")
    with runtime.data_engine.connect() as own:
        return own.execute(query).first() is not None


def restrict(
    *, conn: Connection, subject_id: str, request_id: str | None, clock: Clock = utcnow
) -> bool:
    """Open a restriction of the subject (idempotent); return False when none was opened.

    Each restriction request opens its own row, named by ``request_id``, even while another
    request's restriction is open: lifting one (:func:`lift_request`) leaves the others in force,
    and running the same request again opens nothing more. Without a request (``None``) a row is
    opened unless the subject is restricted already."""
    mine = _R.c.request_id == request_id if request_id is not None else sa.true()
    held = conn.execute(
        sa.select(sa.literal(1)).where(
            _R.c.subject_id == subject_id, _R.c.lifted_at.is_(None), mine
        )
    ).first()
    if held is not None:
        return False
    conn.execute(
        sa.insert(_R).values(subject_id=subject_id, request_id=request_id, started_at=clock())
    )
    return True


def lift_request(*, conn: Connection, request_id: str, clock: Clock = utcnow) -> list[str]:
    """Lift the restriction ``request_id`` opened, if it is still open; return the subjects it
    lifted (none: already lifted, or the request opened none). Restrictions opened by other
    requests stay in force."""
    subjects = sorted(
        conn.execute(
            sa.select(_R.c.subject_id).where(
                _R.c.request_id == request_id, _R.c.lifted_at.is_(None)
            )
        ).scalars()
    )
    if subjects:
        conn.execute(
            sa.update(_R)
            .where(_R.c.request_id == request_id, _R.c.lifted_at.is_(None))
            .values(lifted_at=clock())
        )
    return subjects
