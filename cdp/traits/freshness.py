"""When the stored traits were computed (``cdp serve``'s traits job, export manifests).

A recompute (:func:`cdp.traits.compute.compute_traits`) deletes every ``subject_traits`` row
and writes one per subject, all with the run's time as ``computed_at``, in one transaction;
nothing else writes that column (a merge moves a row to the survivor as it is, an erasure
deletes it). So the latest ``computed_at`` is the time of the last recompute whose order traits
committed, and there is none when no recompute ever stored a row (or the database holds no
subjects).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from cdp.traits.models import SubjectTraits

traits_t = SubjectTraits.__table__  # type: ignore[attr-defined]


def traits_computed_at(conn: sa.Connection) -> datetime | None:
    """The time of the last traits recompute (the clock it ran with), or None."""
    stamp = conn.execute(sa.select(sa.func.max(traits_t.c.computed_at))).scalar_one()
    return stamp if isinstance(stamp, datetime) else None
