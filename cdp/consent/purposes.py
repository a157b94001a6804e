"""Processing purposes as configuration: lawful basis, default state, retention window.

A *purpose* is what a subject's data is used for. Every purpose here is one a subject can have a
state for in the consent ledger. Its lawful basis decides what "no ledger entry yet" means:

- ``consent`` (GDPR art. 6(1)(a)): opt-in. Nothing is done until the subject grants; the default
  state is ``withdrawn``.
- ``legitimate_interest`` (art. 6(1)(f)): done by default, stops on objection (a ``withdrawn``
  entry in the ledger, e.g. through an objection request or GPC).
- ``contract`` (art. 6(1)(b)): needed to serve the customer; a withdrawal is recorded as evidence
  but does not stop it (only erasure or restriction does).

``retention`` is how long data collected for the purpose is kept (see :mod:`cdp.privacy.retention`
for which tables each window governs). ``marketing`` purposes are the ones an objection to direct
marketing withdraws all at once.

The names match the consent purposes of the access vocabulary (:mod:`cdp.access.categories`), so an
export running under purpose ``email_marketing`` is checked against the ``email_marketing`` state.
To change a window or a default, edit :data:`PURPOSES` (a reviewed code change, like the policy),
and update docs/consent-and-privacy.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from types import MappingProxyType

from cdp.errors import InvalidInputError


class LawfulBasis(StrEnum):
    """The legal ground a purpose rests on."""

    CONSENT = "consent"
    LEGITIMATE_INTEREST = "legitimate_interest"
    CONTRACT = "contract"


class ConsentStatus(StrEnum):
    """A ledger entry grants or withdraws one purpose."""

    GRANTED = "granted"
    WITHDRAWN = "withdrawn"


class Mechanism(StrEnum):
    """How the subject expressed the choice (stored in ``consent_events.mechanism``)."""

    CHECKBOX = "checkbox"
    BANNER = "banner"
    IMPORT = "import"
    API = "api"
    CLI = "cli"
    SDK = "sdk"
    GPC = "gpc"
    REQUEST = "request"


@dataclass(frozen=True, slots=True)
class PurposeConfig:
    """One purpose of processing."""

    name: str
    description: str
    basis: LawfulBasis
    retention: timedelta
    marketing: bool

    @property
    def default_status(self) -> ConsentStatus:
        """The state before the ledger holds any entry for the subject and purpose."""
        if self.basis is LawfulBasis.CONSENT:
            return ConsentStatus.WITHDRAWN
        return ConsentStatus.GRANTED

    @property
    def withdrawable(self) -> bool:
        """Whether a withdrawal stops the processing (false for contract purposes)."""
        return self.basis is not LawfulBasis.CONTRACT


def _p(
    name: str, description: str, basis: LawfulBasis, days: int, *, marketing: bool = False
) -> PurposeConfig:
    return PurposeConfig(name, description, basis, timedelta(days=days), marketing)


PURPOSES: Mapping[str, PurposeConfig] = MappingProxyType(
    {
        p.name: p
        for p in (
            _p(
                "email_marketing",
                "Marketing email (segments exported to an email tool).",
                LawfulBasis.CONSENT,
                730,
                marketing=True,
            ),
            _p(
                "sms_marketing",
                "Marketing SMS (segments exported to an SMS tool).",
                LawfulBasis.CONSENT,
                730,
                marketing=True,
            ),
            _p(
                "push_marketing",
                "App push notifications.",
                LawfulBasis.CONSENT,
                730,
                marketing=True,
            ),
            _p(
                "personalization",
                "Personalised recommendations and content from behaviour.",
                LawfulBasis.CONSENT,
                730,
            ),
            _p(
                "analytics",
                "Aggregate, pseudonymous analysis (RFM, CLV, churn, layers).",
                LawfulBasis.LEGITIMATE_INTEREST,
                395,
            ),
            _p(
                "ad_audiences",
                "Hashed customer lists shared with ad platforms (a 'sale/share' under CCPA).",
                LawfulBasis.CONSENT,
                395,
                marketing=True,
            ),
            _p(
                "support",
                "Serving the customer's orders and support requests.",
                LawfulBasis.CONTRACT,
                1095,
            ),
        )
    }
)
"""Every purpose, by name (read-only)."""

PURPOSE_NAMES: tuple[str, ...] = tuple(PURPOSES)
"""Purpose names in a stable order."""

MARKETING_PURPOSES: tuple[str, ...] = tuple(p.name for p in PURPOSES.values() if p.marketing)
"""Purposes an objection to direct marketing withdraws."""


def get_purpose(name: str) -> PurposeConfig:
    """The configuration of purpose ``name``; :class:`InvalidInputError` for an unknown name."""
    try:
        return PURPOSES[name]
    except KeyError:
        raise InvalidInputError("unknown purpose", field="purpose") from None
