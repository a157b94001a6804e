"""Who may be profiled and segmented: the one place where subjects are filtered out of it.

Every trait computation (order traits, tiers, CLV) and every segment query goes through
:func:`marketing_allowed`. A subject gets no RFM, lifecycle, value layer, tier, CLV or churn
trait and belongs to no segment while

- under an open restriction of processing (GDPR art. 18, see :mod:`cdp.privacy.restriction`), or
- its ``analytics`` purpose is withdrawn: profiling rests on legitimate interest, and an
  objection to it that the controller has upheld (art. 21(1)) is recorded as that withdrawal
  (see :mod:`cdp.privacy.objection`).

When the ground ends (the restriction is lifted, analytics granted again), the next computation
brings the subject back.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from cdp.consent.ledger_state import granted_condition
from cdp.privacy.restriction import not_restricted_condition

PROFILING_PURPOSE = "analytics"
"""The purpose profiling (traits, segments) serves; withdrawn, the subject is not profiled."""


def marketing_allowed(subject_id: ColumnElement[Any]) -> ColumnElement[bool]:
    """A SQL condition, correlated on ``subject_id``: the subject may be profiled."""
    return sa.and_(not_restricted_condition(subject_id), profiling_allowed(subject_id))


def profiling_allowed(subject_id: ColumnElement[Any]) -> ColumnElement[bool]:
    """The consent half of :func:`marketing_allowed`: ``analytics`` is not withdrawn (no upheld
    objection to profiling). Exports check it apart from the restriction, to count each."""
    return granted_condition(PROFILING_PURPOSE, subject_id)
