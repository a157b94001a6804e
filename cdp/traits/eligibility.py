"""Who may be profiled and segmented: the one place where restricted subjects are filtered.

Every trait computation (order traits, tiers, CLV) and every segment query goes through
:func:`marketing_allowed`. A subject under an open restriction of processing (GDPR art. 18,
see :mod:`cdp.privacy.restriction`) gets no RFM, lifecycle, value layer, tier, CLV or churn
trait and belongs to no segment; when the restriction is lifted, the next computation brings
the subject back. Further grounds (e.g. an objection to profiling) belong here too.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from cdp.privacy.restriction import not_restricted_condition


def marketing_allowed(subject_id: ColumnElement[Any]) -> ColumnElement[bool]:
    """A SQL condition, correlated on ``subject_id``: the subject may be profiled."""
    return sa.and_(not_restricted_condition(subject_id))
