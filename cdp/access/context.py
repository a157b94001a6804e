"""Who is asking, with which roles, for what purpose: the context every audited read carries.

The API builds an :class:`AccessContext` from a bearer token and the ``X-Purpose`` header
(:mod:`cdp.api.auth`); the CLI from ``--token``/``CDP_TOKEN`` and ``--purpose``
(:mod:`cdp.cli.access`); an export from its principal. Services take it as ``ctx`` and ask it
what the policy allows, so no service needs to know which door a request came through.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdp.access.categories import PURPOSES
from cdp.access.engine import get_policy_engine
from cdp.access.policy import Decision
from cdp.errors import InvalidInputError


@dataclass(frozen=True, slots=True)
class AccessContext:
    """An authenticated principal acting for one purpose within one request.

    ``decision`` is the policy's answer to the check that admitted the request (``None`` when the
    context was built without one, e.g. by a CLI command that checks several resources itself).
    """

    principal_id: str
    principal_name: str
    roles: tuple[str, ...]
    purpose: str
    request_id: str
    client: str
    decision: Decision | None = None

    def allows(self, resource: str, action: str) -> bool:
        """Whether the policy allows this principal ``action`` on ``resource`` for its purpose."""
        return get_policy_engine().decide(self.roles, resource, action, self.purpose).allowed

    def decide(self, resource: str, action: str) -> Decision:
        """The policy's full decision for ``action`` on ``resource`` for this purpose."""
        return get_policy_engine().decide(self.roles, resource, action, self.purpose)

    def categories(self) -> frozenset[str]:
        """The data categories this principal may read for this purpose."""
        return get_policy_engine().allowed_categories(self.roles, self.purpose)


def check_purpose(purpose: str | None, *, source: str) -> str:
    """Return ``purpose`` if it is one cdp knows; raise ``InvalidInputError`` naming ``source``
    (the header or option it came from) otherwise."""
    if purpose is None or not purpose.strip():
        raise InvalidInputError(
            f"every request must name its purpose of use ({source}); one of: "
            + ", ".join(PURPOSES),
            field=source,
        )
    value = purpose.strip()
    if value not in PURPOSES:
        raise InvalidInputError(
            f"unknown purpose of use ({source}); one of: " + ", ".join(PURPOSES), field=source
        )
    return value
