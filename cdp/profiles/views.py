"""Field-level profile views: what one principal may see of one profile, for one purpose.

A profile is pseudonymous by default: subject id, dates, which *kinds* of identity are known. A PII
field is decrypted only when the policy lets the principal read its category (``contact``,
``identity``, ``address``) for the request's purpose; ``orders`` (a summary) needs ``behaviour``.
A field that may not be shown is absent from the view: no ``null``, no mask, no placeholder, so the
response says nothing about whether the value exists or how long it is. Fields the caller may not
see are never decrypted at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

from cdp.access.categories import FIELD_CATEGORY, PII_CATEGORIES, PII_FIELDS, resource_for
from cdp.crypto.vault import Vault
from cdp.errors import InvalidInputError

BASE_FIELDS: Final = ("subject_id", "created_at", "signed_up_at", "identity_kinds")
"""Pseudonymous fields every profile view carries (the ``profile`` resource)."""

PII_ORDER: Final = tuple(f for f in FIELD_CATEGORY if f in PII_FIELDS)
"""PII fields in a stable order."""

SELECTABLE: Final = frozenset((*BASE_FIELDS, *PII_ORDER, "orders"))
"""Field names a caller may ask for with ``fields=``."""


class OrderSummary(BaseModel):
    """The subject's orders in brief (behaviour category)."""

    model_config = ConfigDict(extra="forbid")

    count: int
    value_total: float
    first_order_at: datetime | None
    last_order_at: datetime | None


class ProfileView(BaseModel):
    """A profile as one principal may see it. Absent keys were not allowed (or do not exist)."""

    model_config = ConfigDict(extra="forbid")

    subject_id: str
    created_at: datetime | None = None
    signed_up_at: datetime | None = None
    identity_kinds: list[str] | None = None
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    birthday: str | None = None
    gender: str | None = None
    street: str | None = None
    city: str | None = None
    postal_code: str | None = None
    state: str | None = None
    country: str | None = None
    orders: OrderSummary | None = None

    def __repr__(self) -> str:
        return f"ProfileView(subject_id={self.subject_id!r}, fields={sorted(self.shown())})"

    __str__ = __repr__

    def shown(self) -> list[str]:
        """The field names this view carries (what the audit record lists), in the model's
        order: the same read is recorded the same way by every process (a set's order depends
        on the process's string hashing)."""
        carried = self.model_fields_set
        return [name for name in type(self).model_fields if name in carried]


@dataclass(frozen=True, slots=True)
class ProfileData:
    """What storage holds for one subject (ciphertexts still sealed)."""

    subject_id: str
    created_at: datetime
    signed_up_at: datetime | None
    identity_kinds: tuple[str, ...]
    sealed: Mapping[str, bytes]
    orders: OrderSummary | None


def parse_fields(raw: str | None) -> frozenset[str] | None:
    """Parse a ``fields=a,b`` selection; ``None`` means every field the caller may see."""
    if raw is None or not raw.strip():
        return None
    wanted = frozenset(f.strip() for f in raw.split(",") if f.strip())
    unknown = len(wanted - SELECTABLE)
    if unknown:  # counted, not named: what was typed may be a person's email or name
        raise InvalidInputError(
            f"{unknown} unknown profile field(s) in fields=; "
            f"known: {', '.join(sorted(SELECTABLE))}",
            field="fields",
        )
    return wanted


def resources_needed(fields: Iterable[str]) -> list[str]:
    """The policy resources a selection of fields needs (for an explicit ``fields=`` request)."""
    needed = {resource_for(FIELD_CATEGORY[f]) for f in fields if f in FIELD_CATEGORY}
    return sorted(needed)


KIND_MARK: Final = "kind:"
"""Prefix of the entries of a visible set that let ``identity_kinds`` name a PII kind."""


def visible_fields(categories: frozenset[str], wanted: frozenset[str] | None) -> frozenset[str]:
    """Fields a principal allowed ``categories`` sees, within ``wanted`` (``None``: all).

    When ``identity_kinds`` is visible, the set also holds ``kind:<field>`` for each PII field
    (``email``, ``phone``) whose category is allowed: only those kinds may be listed, since an
    analyst learning that a person *has* an email or phone is learning about a field they may
    not see."""
    allowed = set(BASE_FIELDS)
    allowed.update(f for f in PII_ORDER if FIELD_CATEGORY[f] in categories)
    if "behaviour" in categories:
        allowed.add("orders")
    kinds = {KIND_MARK + f for f in PII_ORDER if FIELD_CATEGORY[f] in categories}
    visible = allowed if wanted is None else allowed & wanted
    if "identity_kinds" in visible:
        visible |= kinds
    return frozenset(visible)


def shown_kinds(kinds: Iterable[str], visible: frozenset[str]) -> tuple[str, ...]:
    """The identity kinds ``visible`` lets a view list: pseudonymous ones (customer id, user id,
    anonymous id) always, a PII kind only with its field's category (see
    :func:`visible_fields`)."""
    return tuple(sorted(k for k in set(kinds) if k not in PII_FIELDS or KIND_MARK + k in visible))


def build_view(data: ProfileData, visible: frozenset[str], vault: Vault) -> ProfileView:
    """The view of ``data`` carrying only ``visible`` fields; decrypts only those PII fields."""
    values: dict[str, Any] = {"subject_id": data.subject_id}
    if "created_at" in visible:
        values["created_at"] = data.created_at
    if "signed_up_at" in visible and data.signed_up_at is not None:
        values["signed_up_at"] = data.signed_up_at
    if "identity_kinds" in visible:
        values["identity_kinds"] = list(data.identity_kinds)
    sealed = {f: b for f, b in data.sealed.items() if f in visible and f in PII_FIELDS}
    if sealed:
        values.update(vault.decrypt_fields(data.subject_id, sealed))
    if "orders" in visible and data.orders is not None:
        values["orders"] = data.orders
    return ProfileView(**values)


def pii_categories(categories: frozenset[str]) -> frozenset[str]:
    """The PII categories among ``categories``."""
    return categories & PII_CATEGORIES
