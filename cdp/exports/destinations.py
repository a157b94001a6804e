"""Destinations: where an export may go, for which consent purpose, with which fields at most.

A destination is the unit of minimisation: its ``fields`` list is the most an export to it can
ever carry, whatever the segment holds. Ad-platform kinds (``meta``, ``google``) may only list
fields their format uses. Webhook destinations need a URL (``https``, or ``http`` to a loopback
host for local receivers; no credentials in the URL; no link-local or unspecified address, nor a
host written as a legacy IPv4 number: :mod:`cdp.exports.webhook_hosts`) and get a signing
secret, generated here, shown once, and stored wrapped under the key-encryption key
(:mod:`cdp.exports.secrets`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, cast
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa
from sqlalchemy import Connection

from cdp.access.categories import CONSENT_PURPOSES
from cdp.clock import Clock, utcnow
from cdp.crypto.provider import WrappedKey
from cdp.db.conflicts import taken_name_is_conflict
from cdp.errors import ConflictError, InvalidInputError, NotFoundError
from cdp.exports.audience_formats import PROFILE_FIELDS, get_format
from cdp.exports.models import DESTINATION_ID_PREFIX as ID_PREFIX
from cdp.exports.models import Destination, new_destination_id
from cdp.exports.secrets import new_signing_secret, wrapped_secret
from cdp.exports.webhook_hosts import host_problem
from cdp.runtime import Runtime

DESTINATIONS = cast(sa.Table, Destination.__table__)  # type: ignore[attr-defined]


class DestinationKind(StrEnum):
    """The output a destination receives."""

    CSV = "csv"
    JSONL = "jsonl"
    WEBHOOK = "webhook"
    META = "meta"
    GOOGLE = "google"


#: Audience format (registry name) of the ad-platform kinds.
AUDIENCE_FORMAT: Final = {
    DestinationKind.META: "meta_custom_audience",
    DestinationKind.GOOGLE: "google_customer_match",
}

#: Every field a destination may list: the readable profile fields (plus street for files).
EXPORTABLE_FIELDS: Final = (*PROFILE_FIELDS, "street")

_NAME: Final = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}\Z")
_LOOPBACK_NAMES: Final = frozenset({"localhost"})


@dataclass(frozen=True, slots=True)
class DestinationSpec:
    """What an admin gives to create a destination."""

    name: str
    kind: str
    purpose: str
    fields: Sequence[str]
    min_audience: int = 100
    url: str | None = None
    batch_size: int = 500
    max_attempts: int = 5
    timeout_seconds: float = 10.0


@dataclass(frozen=True, slots=True)
class DestinationInfo:
    """A destination as shown (never its secret)."""

    id: str
    name: str
    kind: str
    purpose: str
    fields: tuple[str, ...]
    min_audience: int
    url: str | None
    has_secret: bool
    previous_secret_until: datetime | None
    """Until when the secret a rotation replaced still signs beside the current one."""
    batch_size: int
    max_attempts: int
    timeout_seconds: float
    enabled: bool
    """False: disabled (``cdp destinations disable``); no export runs to it."""
    created_by: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class CreatedDestination:
    """A new destination and, for a webhook, its signing secret (shown this once)."""

    destination: DestinationInfo
    signing_secret: str | None

    def __repr__(self) -> str:
        return f"CreatedDestination(destination={self.destination!r}, signing_secret=<hidden>)"


def _check_url(url: str | None) -> str:
    if not url:
        raise InvalidInputError("a webhook destination needs a url", field="url")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise InvalidInputError(
            "the url must not contain spaces or control characters", field="url"
        )
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        raise InvalidInputError("the url is malformed", field="url") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidInputError("the url must be http(s)://host/...", field="url")
    if parts.username or parts.password:
        raise InvalidInputError("the url must not carry credentials", field="url")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise InvalidInputError("the url's port must be a number from 1 to 65535", field="url")
    try:
        # as the sender will build it (e.g. an IDNA-invalid host)
        sent_host = httpx.Request("POST", url).url.raw_host.decode("ascii")
    except (httpx.InvalidURL, ValueError):  # IDNA errors are ValueErrors
        raise InvalidInputError("the url is malformed", field="url") from None
    for host in dict.fromkeys((parts.hostname, sent_host)):  # as either parser reads it
        problem = host_problem(host)
        if problem is not None:
            raise InvalidInputError(problem, field="url")
    if parts.fragment:
        raise InvalidInputError("the url must not have a fragment", field="url")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise InvalidInputError("plain http is only allowed to a loopback host", field="url")
    return url


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


COUNTRY_STEERED = ("postal_code", "state")
"""Ad-platform fields normalised by the subject's country (a UK postcode, a US state code);
phones need none, being stored in E.164."""


def _check_fields(kind: DestinationKind, fields: Sequence[str]) -> tuple[str, ...]:
    wanted = tuple(dict.fromkeys(f.strip() for f in fields if f.strip()))
    if not wanted:
        raise InvalidInputError("a destination needs at least one field", field="fields")
    unknown = [f for f in wanted if f not in EXPORTABLE_FIELDS]
    if unknown:
        raise InvalidInputError(
            f"unknown field(s) {', '.join(unknown)}; one of: {', '.join(EXPORTABLE_FIELDS)}",
            field="fields",
        )
    fmt_name = AUDIENCE_FORMAT.get(kind)
    if fmt_name is not None:
        used = {f for fs in get_format(fmt_name).fields_required.values() for f in fs}
        extra = [f for f in wanted if f not in used]
        if extra:
            raise InvalidInputError(
                f"the {kind.value} format does not use field(s) {', '.join(extra)}",
                field="fields",
            )
        steered = [f for f in COUNTRY_STEERED if f in wanted]
        if steered and "country" not in wanted:
            raise InvalidInputError(
                f"{' and '.join(steered)} need country among the fields: the platform's "
                "normalisation of them depends on the subject's country, and only the "
                "destination's fields are decrypted",
                field="fields",
            )
    order = {f: i for i, f in enumerate(EXPORTABLE_FIELDS)}
    return tuple(sorted(wanted, key=order.__getitem__))


def _validate(spec: DestinationSpec) -> tuple[DestinationKind, tuple[str, ...], str | None]:
    if not _NAME.match(spec.name):
        raise InvalidInputError(
            "a destination name is 1-64 lower-case letters, digits, '_', '.' or '-'", field="name"
        )
    if spec.name.startswith(ID_PREFIX):
        # commands take a destination's name or its id: a name shaped like an id is ambiguous
        raise InvalidInputError(
            f"a destination name may not start with {ID_PREFIX!r} (destination ids do)",
            field="name",
        )
    return check_settings(spec)


def check_settings(spec: DestinationSpec) -> tuple[DestinationKind, tuple[str, ...], str | None]:
    """Check everything but the name (a creation checks that too; a change keeps it): return
    the kind, the fields (deduplicated, in :data:`EXPORTABLE_FIELDS` order) and the URL (a
    webhook's; None for the other kinds). Raises ``InvalidInputError`` naming the setting."""
    try:
        kind = DestinationKind(spec.kind)
    except ValueError:
        known = ", ".join(k.value for k in DestinationKind)
        raise InvalidInputError(f"kind must be one of {known}", field="kind") from None
    if spec.purpose not in CONSENT_PURPOSES:
        known = ", ".join(sorted(CONSENT_PURPOSES))
        raise InvalidInputError(f"purpose must be a consent purpose: {known}", field="purpose")
    if not 1 <= spec.min_audience <= 10_000_000:
        raise InvalidInputError(
            "min_audience must be between 1 and 10,000,000", field="min_audience"
        )
    if not 1 <= spec.batch_size <= 10_000:
        raise InvalidInputError("batch_size must be between 1 and 10,000", field="batch_size")
    if not 1 <= spec.max_attempts <= 20:
        raise InvalidInputError("max_attempts must be between 1 and 20", field="max_attempts")
    if not 0.1 <= spec.timeout_seconds <= 120:
        raise InvalidInputError("timeout_seconds must be 0.1-120", field="timeout_seconds")
    url = _check_url(spec.url) if kind is DestinationKind.WEBHOOK else None
    if kind is not DestinationKind.WEBHOOK and spec.url:
        raise InvalidInputError("only webhook destinations take a url", field="url")
    return kind, _check_fields(kind, spec.fields), url


def info_of(row: Any) -> DestinationInfo:
    """A row of :data:`DESTINATIONS` as shown."""
    m = row._mapping
    return DestinationInfo(
        id=m["id"],
        name=m["name"],
        kind=m["kind"],
        purpose=m["purpose"],
        fields=tuple(f for f in m["fields"].split(",") if f),
        min_audience=m["min_audience"],
        url=m["url"],
        has_secret=m["secret_ct"] is not None,
        previous_secret_until=m["previous_secret_until"],
        batch_size=m["batch_size"],
        max_attempts=m["max_attempts"],
        timeout_seconds=m["timeout_seconds"],
        enabled=bool(m["enabled"]),
        created_by=m["created_by"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def create_destination(
    *,
    runtime: Runtime,
    spec: DestinationSpec,
    created_by: str,
    clock: Clock = utcnow,
    audit: Callable[[Connection, str], object] | None = None,
) -> CreatedDestination:
    """Validate and store a destination; a webhook gets a new signing secret (returned once).
    ``audit`` is called with the transaction and the new destination's id before it commits:
    the destination and its audit record are kept together, or neither is.

    Raises ``InvalidInputError`` for a bad spec, ``ConflictError`` if the name is taken."""
    kind, fields, url = _validate(spec)
    dest_id = new_destination_id()
    secret = new_signing_secret() if kind is DestinationKind.WEBHOOK else None
    now = clock()
    values: dict[str, Any] = {
        "id": dest_id,
        "name": spec.name,
        "kind": kind.value,
        "purpose": spec.purpose,
        "fields": ",".join(fields),
        "min_audience": spec.min_audience,
        "url": url,
        "secret_ct": None,
        "secret_kek_version": None,
        "batch_size": spec.batch_size,
        "max_attempts": spec.max_attempts,
        "timeout_seconds": spec.timeout_seconds,
        "enabled": True,
        "created_by": created_by,
        "created_at": now,
        "updated_at": now,
    }
    with (
        taken_name_is_conflict(f"a destination named {spec.name!r} already exists"),
        runtime.data_engine.connect() as conn,
    ):
        txn = conn.begin()
        taken = conn.execute(
            sa.select(DESTINATIONS.c.id).where(DESTINATIONS.c.name == spec.name)
        ).first()
        if taken is not None:
            raise ConflictError(f"a destination named {spec.name!r} already exists")
        wrapping: contextlib.AbstractContextManager[WrappedKey | None] = (
            wrapped_secret(runtime.keystore, dest_id, secret)
            if secret is not None
            else contextlib.nullcontext()
        )
        with wrapping as wrapped:
            if wrapped is not None:
                values.update(secret_ct=wrapped.blob, secret_kek_version=wrapped.kek_version)
            conn.execute(sa.insert(DESTINATIONS).values(**values))
            row = conn.execute(sa.select(DESTINATIONS).where(DESTINATIONS.c.id == dest_id)).one()
            if audit is not None:
                audit(conn, dest_id)
            txn.commit()  # before the key store's: `retire` then sees the secret
    return CreatedDestination(info_of(row), secret)


def list_destinations(*, runtime: Runtime) -> list[DestinationInfo]:
    """Every destination, by name."""
    with runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        rows = conn.execute(sa.select(DESTINATIONS).order_by(DESTINATIONS.c.name)).all()
    return [info_of(r) for r in rows]


def get_destination(*, runtime: Runtime, name: str) -> DestinationInfo:
    """The destination named (or with id) ``name``; ``NotFoundError`` if there is none."""
    with runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        return info_of(find_row(conn, name))


def find_row(conn: Connection, name: str, *, lock: bool = False) -> Any:
    """The row of the destination named (or with id) ``name``, locked for update with ``lock``
    (PostgreSQL; SQLite's write transactions are serialised already); ``NotFoundError`` if
    there is none."""
    for column in (DESTINATIONS.c.name, DESTINATIONS.c.id):
        # the name first, then the id: one answer even for a name an older release let look
        # like another destination's id
        query = sa.select(DESTINATIONS).where(column == name)
        row = conn.execute(query.with_for_update() if lock else query).first()
        if row is not None:
            return row
    raise NotFoundError(f"no destination named {name!r}")


def write_secret(
    runtime: Runtime, destination_id: str, secret: str, *, replacing: bytes | None = None
) -> int:
    """Store ``secret`` wrapped under the current KEK (checked and counted by the key store:
    :func:`~cdp.exports.secrets.wrapped_secret`); return whether it was written (0 or 1).
    ``replacing``: only if the stored value is still that one (a re-wrap must not bring back a
    secret rotated meanwhile)."""
    where = [DESTINATIONS.c.id == destination_id]
    if replacing is not None:
        where.append(DESTINATIONS.c.secret_ct == replacing)
    with runtime.data_engine.connect() as conn:
        txn = conn.begin()
        with wrapped_secret(runtime.keystore, destination_id, secret) as wrapped:
            changed = conn.execute(
                sa.update(DESTINATIONS)
                .where(*where)
                .values(secret_ct=wrapped.blob, secret_kek_version=wrapped.kek_version)
            )
            txn.commit()  # before the key store's: `retire` then sees the secret
    return int(changed.rowcount or 0)
