"""The export manifest: what went where, on which basis, frozen at send time.

It is stored on the export's row (``export_runs.manifest``) and written beside the output as
``<export id>.manifest.json``. Its counts add up::

    members = excluded_consent + excluded_restriction + excluded_no_data
              + excluded_consent_late + excluded_restriction_late
              + unchanged + sent + failed_delivery + adds_refused

``excluded_consent_late`` and ``excluded_restriction_late`` were eligible when staged but their
consent was withdrawn, or a restriction opened, before their chunk was sent
(:mod:`cdp.exports.recheck`): nothing of theirs was sent.
``unchanged`` are eligible subjects the destination already holds (incremental sync);
``adds_refused`` are eligible subjects not sent because the audience was below the destination's
minimum (the run's status is then ``refused`` or ``removes_only``); ``removed`` (subjects
withdrawn from the destination) is counted apart, since most of them are not members any more.
``traits_computed_at`` is when the traits the segment was evaluated on were computed (read in
the transaction that stages the members; null when they never were, see
:mod:`cdp.traits.freshness`). No personal data is in a manifest: ids, names, counts and digests
only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class ExportCounts:
    """How the members of one export were accounted for."""

    members: int = 0
    excluded_consent: int = 0
    excluded_restriction: int = 0
    excluded_no_data: int = 0
    excluded_consent_late: int = 0
    excluded_restriction_late: int = 0
    unchanged: int = 0
    sent: int = 0
    failed_delivery: int = 0
    adds_refused: int = 0
    removed: int = 0
    removes_failed: int = 0
    removes_unresolvable: int = 0
    removes_rectified: int = 0

    def adds_up(self) -> bool:
        """The members equation above."""
        return self.members == (
            self.excluded_consent
            + self.excluded_restriction
            + self.excluded_no_data
            + self.excluded_consent_late
            + self.excluded_restriction_late
            + self.unchanged
            + self.sent
            + self.failed_delivery
            + self.adds_refused
        )

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class OutputFile:
    """One file (or webhook stream) of an export."""

    op: str
    path: str | None
    rows: int
    sha256: str


@dataclass
class Manifest:
    """Every fact the manifest records (see the module doc)."""

    export_id: str
    status: str
    segment: str
    rule_version: int | None
    destination_id: str
    destination_name: str
    destination_kind: str
    fields: tuple[str, ...]
    purpose: str
    policy_version: str
    mode: str
    consent_snapshot_at: datetime | None
    principal_id: str
    principal_name: str
    roles: tuple[str, ...]
    request_id: str
    started_at: datetime
    finished_at: datetime | None
    counts: ExportCounts
    outputs: list[OutputFile] = field(default_factory=list)
    minimum_audience: int = 0
    traits_computed_at: datetime | None = None

    @property
    def output_sha256(self) -> str | None:
        """The SHA-256 of the main output (the adds), if anything was written."""
        for out in self.outputs:
            if out.op == "add":
                return out.sha256
        return None

    def to_document(self) -> dict[str, Any]:
        """The manifest as a JSON-ready dict."""

        def at(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "manifest_version": 1,
            "export_id": self.export_id,
            "status": self.status,
            "segment": {"name": self.segment, "rule_version": self.rule_version},
            "destination": {
                "id": self.destination_id,
                "name": self.destination_name,
                "kind": self.destination_kind,
                "fields": list(self.fields),
                "minimum_audience": self.minimum_audience,
            },
            "purpose": self.purpose,
            "policy_version": self.policy_version,
            "mode": self.mode,
            "consent_snapshot_at": at(self.consent_snapshot_at),
            "traits_computed_at": at(self.traits_computed_at),
            "counts": self.counts.as_dict(),
            "outputs": [asdict(o) for o in self.outputs],
            "output_sha256": self.output_sha256,
            "principal": {
                "id": self.principal_id,
                "name": self.principal_name,
                "roles": list(self.roles),
            },
            "request_id": self.request_id,
            "started_at": at(self.started_at),
            "finished_at": at(self.finished_at),
        }
