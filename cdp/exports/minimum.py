"""The destination's minimum audience: it refuses the adds, never the removes.

A destination's ``min_audience`` keeps cdp from sending an audience so small that it could single
people out. It applies to what is *sent* (the adds, or the whole list on a full send), checked
twice: after staging (eligible subjects) and after decryption (usable subjects). It never holds
back a remove: a consent withdrawal, a restriction or a subject leaving the segment must reach a
destination however small the audience has become, or the destination would keep the data of
people who withdrew. So a run below the minimum:

- with removes staged sends them, refuses the adds and ends ``removes_only``;
- with nothing to remove sends nothing and ends ``refused``;

both with error code ``audience_too_small``, the refused adds counted as ``adds_refused``, and
raise :class:`~cdp.errors.AudienceTooSmallError` naming the run and its counts (numbers only).
"""

from __future__ import annotations

from cdp.errors import AudienceTooSmallError
from cdp.exports.destinations import DestinationInfo
from cdp.exports.manifest import ExportCounts

ERROR_CODE = "audience_too_small"
REFUSED = "refused"
REMOVES_ONLY = "removes_only"


def below_minimum(dest: DestinationInfo, audience: int) -> bool:
    """Whether ``audience`` subjects are too few to send to ``dest``."""
    return audience < dest.min_audience


def refusal(
    dest: DestinationInfo, counts: ExportCounts, audience: int, *, export_id: str, status: str
) -> AudienceTooSmallError:
    """The error a run below the minimum raises once it is closed (see the module doc)."""
    message = (
        f"only {audience} subjects remain for destination {dest.name!r}, which requires at "
        f"least {dest.min_audience} (members {counts.members}, excluded for consent "
        f"{counts.excluded_consent}, for restriction {counts.excluded_restriction}, "
        f"without usable data {counts.excluded_no_data})"
    )
    if status == REMOVES_ONLY:
        message += (
            f": the adds were refused ({counts.adds_refused}) and the removes were sent "
            f"(removed {counts.removed}, unresolvable {counts.removes_unresolvable}, failed "
            f"{counts.removes_failed}) in export {export_id}"
        )
    else:
        message += f": nothing was sent (export {export_id})"
    return AudienceTooSmallError(
        message, counts=counts.as_dict(), export_id=export_id, status=status
    )
