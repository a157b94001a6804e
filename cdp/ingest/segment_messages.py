"""Segment Spec messages as cdp reads them: :class:`SegmentMessage`, ids and times.

Field names are Segment's (``userId``, ``anonymousId``, ``messageId``, ``traits``, ``context`` …);
how a message becomes records is :mod:`cdp.ingest.segment_models`. Of a message that is invalid,
:func:`salvage` reads the parts a consent withdrawal needs (:class:`MessageBasics`).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cdp.ingest.record_rules import safe_id
from cdp.validation import CONTROL_MESSAGE, not_epoch, plain_text

ORDER_COMPLETED = "Order Completed"


def number_id(value: Any) -> Any:
    """A number sent as an id, as the string Segment's libraries make of it (JavaScript's
    ``String(n)``): an integer, or an integral float, without a decimal point (``1`` and ``1.0``
    are one id, "1"), other finite numbers in their shortest form. NaN and the infinities (JSON
    extensions cdp reads, and ``1e400``) are refused: as "nan" or "inf" they would join unrelated
    visitors into one subject."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    if value.is_integer() and abs(value) < 1e21:  # JavaScript writes 1e21 and up with an exponent
        return str(int(value))
    return repr(value)


def _segment_id(value: str | None) -> str | None:
    """The identifier rules of every record (printable, trimmed, no formula start), checked
    here so that a message that builds no record (``group``) is held to them too."""
    return safe_id(value)


def _aware(value: datetime | None) -> datetime | None:
    """A time without a zone is UTC (as in batch files), so times can be compared."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def event_time(
    timestamp: datetime | None,
    original: datetime | None,
    sent_at: datetime | None,
    received_at: datetime,
) -> datetime:
    """The event time, corrected for the sender's clock skew as Segment does: the device's time
    (``timestamp``, else ``originalTimestamp``) plus ``received_at - sentAt``. A ``timestamp``
    beside an ``originalTimestamp`` is one Segment (or a relay) already corrected: taken as it
    is. Without ``sentAt``, the device's time as it is."""
    if timestamp is not None and original is not None:
        return timestamp
    at = timestamp or original
    if at is None:
        return received_at
    if sent_at is not None:
        try:
            return at + (received_at - sent_at)
        except OverflowError:  # a sentAt centuries off: no correction; the time is then
            return at  # dated at arrival if ahead (plan_messages), else range-checked
    return at


_CONFIG = ConfigDict(extra="ignore", hide_input_in_errors=True, populate_by_name=True)


class MessageBasics(BaseModel):
    """What a consent withdrawal needs of a message: who (``userId``, ``anonymousId``), when
    (``timestamp``, ``originalTimestamp``, ``sentAt``) and ``context``. Read by :func:`salvage`
    from a message that is otherwise invalid, so that its withdrawals are not lost with it."""

    model_config = _CONFIG

    user_id: str | None = Field(default=None, alias="userId", max_length=256)
    anonymous_id: str | None = Field(default=None, alias="anonymousId", max_length=256)
    timestamp: datetime | None = None
    original_timestamp: datetime | None = Field(default=None, alias="originalTimestamp")
    sent_at: datetime | None = Field(default=None, alias="sentAt")
    context: dict[str, Any] = Field(default_factory=dict)

    def __repr__(self) -> str:
        return "MessageBasics()"

    @field_validator("user_id", "anonymous_id", mode="before")
    @classmethod
    def _number_ids(cls, value: Any) -> Any:
        return number_id(value)

    @field_validator("user_id", "anonymous_id")
    @classmethod
    def _ids(cls, value: str | None) -> str | None:
        return _segment_id(value)

    @field_validator("timestamp", "original_timestamp", "sent_at", mode="before")
    @classmethod
    def _not_epoch(cls, value: Any) -> Any:
        return not_epoch(value)

    @field_validator("context", mode="before")
    @classmethod
    def _null_objects(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("timestamp", "original_timestamp", "sent_at", mode="after")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return _aware(value)

    def when(self, received_at: datetime) -> datetime:
        """The event time, corrected for the sender's clock skew as Segment does."""
        return event_time(self.timestamp, self.original_timestamp, self.sent_at, received_at)


_SALVAGED = (
    ("userId",),
    ("anonymousId",),
    ("timestamp", "originalTimestamp", "sentAt"),
    ("context",),
)
"""The parts :func:`salvage` reads, each kept only when it is valid on its own."""


def salvage(raw: dict[str, Any]) -> MessageBasics:
    """The valid parts of an invalid message: each id on its own, the times together (one bad
    time drops them all: the message is then dated at its arrival), the context."""
    kept: dict[str, Any] = {}
    for names in _SALVAGED:
        part = {name: raw[name] for name in names if name in raw}
        if not part:
            continue
        try:
            MessageBasics.model_validate(part)
        except ValidationError:
            continue
        kept.update(part)
    return MessageBasics.model_validate(kept)


def batch_sent_at(value: Any) -> Any:
    """A batch's ``sentAt`` when it is a valid time (the value as sent: each message reads it as
    its own), else None. Segment's libraries set ``sentAt`` on the batch; it corrects the times
    of the messages that carry none. An invalid one is not applied rather than making every
    message of the batch invalid: it only corrects clock skew."""
    if value is None:
        return None
    try:
        MessageBasics.model_validate({"sentAt": value})
    except ValidationError:
        return None
    return value


class SegmentMessage(MessageBasics):
    """One message of the Segment Spec (unknown fields such as ``integrations`` are ignored): the
    parts :class:`MessageBasics` reads, with their rules, and the rest."""

    type: Literal["identify", "track", "page", "screen", "alias", "group"]
    message_id: str | None = Field(default=None, alias="messageId", max_length=128)
    previous_id: str | None = Field(default=None, alias="previousId", max_length=256)
    event: str | None = Field(default=None, max_length=256)
    name: str | None = Field(default=None, max_length=256)
    traits: dict[str, Any] = Field(default_factory=dict)
    properties: dict[str, Any] = Field(default_factory=dict)

    def __repr__(self) -> str:
        return f"SegmentMessage(type={self.type!r})"

    @field_validator("previous_id", mode="before")
    @classmethod
    def _number_previous_id(cls, value: Any) -> Any:
        return number_id(value)

    @field_validator("previous_id")
    @classmethod
    def _previous_id(cls, value: str | None) -> str | None:
        return _segment_id(value)

    @field_validator("message_id")
    @classmethod
    def _message_id(cls, value: str | None) -> str | None:
        """Printable, as every identifier (an identify's id is stored as sent)."""
        if value is not None and not value.isprintable():
            raise ValueError(CONTROL_MESSAGE)
        return value

    @field_validator("event", "name")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return plain_text(value)

    @field_validator("traits", "properties", mode="before")
    @classmethod
    def _null_nested(cls, value: Any) -> Any:
        return {} if value is None else value

    def checks(self) -> list[tuple[str, str]]:
        """Segment's own rules: an identifier; a track has an event; an alias has both ids; the
        objects the spec nests (``context.traits``, an order's ``products``) have their shape."""
        problems = []
        if not isinstance(self.context.get("traits") or {}, dict):
            problems.append(("context.traits", "context.traits must be an object"))
        products = self.properties.get("products")
        if self.event == ORDER_COMPLETED and not isinstance(products or [], list):
            problems.append(("properties.products", "products must be an array"))
        if not (self.user_id or self.anonymous_id):
            problems.append(("userId", "userId or anonymousId is required"))
        if self.type == "track" and not self.event:
            problems.append(("event", "a track call needs an event name"))
        if self.type == "alias" and not (self.previous_id and self.user_id):
            problems.append(("previousId", "an alias call needs previousId and userId"))
        return problems
