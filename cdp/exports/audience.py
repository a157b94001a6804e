"""The segment at send time: membership recomputed now, as one SQL selectable of subject ids.

An export never trusts a stored membership snapshot: it asks the segments service for the
current rule version and its compiled query, and filters that query by consent and restriction
in the same statement (:mod:`cdp.exports.staging`). The resolver is a parameter of the pipeline
so that a benchmark or a test can hand it a selectable directly; production uses
:func:`segment_audience`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from cdp.clock import Clock
from cdp.runtime import Runtime


@dataclass(frozen=True)
class SendTimeAudience:
    """A segment's name, the rule version evaluated, and its members as a selectable."""

    segment: str
    rule_version: int | None
    members: sa.Select[tuple[str]]


AudienceResolver = Callable[[Runtime, str, Clock], SendTimeAudience]


def segment_audience(runtime: Runtime, segment: str, clock: Clock) -> SendTimeAudience:
    """The segment named ``segment``, its current rule version evaluated now.

    The rule is compiled by the segments compiler (:func:`cdp.segments.compiler.condition`, the
    same joins as :func:`~cdp.segments.compiler.compile_rule`) *without* the restriction filter
    that ``compile_rule`` adds, so that the export itself drops restricted subjects and counts
    them in its manifest (``excluded_restriction``) instead of their vanishing unexplained.
    ``tests/exports`` checks that this query minus restricted subjects equals ``compile_rule``.
    """
    from cdp.segments import compiler, service
    from cdp.traits.config import load_traits_config

    cfg = load_traits_config(runtime.settings)
    view = service.get_segment(runtime=runtime, name=segment, clock=clock, config=cfg)
    clause = service.parse(cfg, view.rule)
    s = compiler.subjects_t
    source = (
        s.outerjoin(compiler.traits_t, compiler.traits_t.c.subject_id == s.c.id)
        .outerjoin(compiler.status_t, compiler.status_t.c.subject_id == s.c.id)
        .outerjoin(compiler.pred_t, compiler.pred_t.c.subject_id == s.c.id)
    )
    query = (
        sa.select(s.c.id.label("subject_id"))
        .select_from(source)
        .where(compiler.condition(clause, subject=s.c.id, now=clock()))
    )
    return SendTimeAudience(segment, view.version, query)
