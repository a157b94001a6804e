"""Principals: create one with roles and a bearer token, authenticate a token, list, revoke.

A token is 32 random bytes (``cdp_`` + URL-safe base64), shown once at creation. Only its SHA-256
digest is stored: a 256-bit random secret cannot be guessed, so a slow password KDF would add cost
and no safety. Authentication looks the digest up through its unique index and then compares it
in constant time; when no principal matches, it compares against a dummy digest, so the work done
does not depend on whether the token existed.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, cast

import sqlalchemy as sa
from sqlalchemy import Connection, RowMapping

from cdp.access.engine import get_policy_engine
from cdp.access.models import Principal, new_principal_id
from cdp.clock import Clock, utcnow
from cdp.db.conflicts import taken_name_is_conflict
from cdp.errors import AuthenticationError, ConflictError, InvalidInputError, NotFoundError
from cdp.runtime import Runtime

TOKEN_PREFIX: Final = "cdp_"  # noqa: S105 (a prefix, not a secret)
KINDS: Final = ("person", "service")
MAX_TOKEN_LIFETIME = timedelta(days=3650)
"""The longest lifetime a token may be given (a longer one is a mistake, or never)."""
_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}\Z")
_DUMMY_DIGEST: Final = hashlib.sha256(b"cdp-no-such-token").hexdigest()
_UNAUTHENTICATED: Final = "the bearer token is unknown, expired or revoked"
PRINCIPALS = cast(sa.Table, Principal.__table__)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class PrincipalInfo:
    """A principal as shown to operators (never its token or token digest)."""

    id: str
    name: str
    kind: str
    roles: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def state(self, now: datetime) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True, slots=True)
class CreatedPrincipal:
    """The result of :func:`create`: the principal and its token, which is shown only once."""

    principal: PrincipalInfo
    token: str

    def __repr__(self) -> str:
        return f"CreatedPrincipal(principal={self.principal!r}, token=<hidden>)"


def token_digest(token: str) -> str:
    """The stored form of a token: SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh bearer token: 32 random bytes."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _info(m: RowMapping) -> PrincipalInfo:
    return PrincipalInfo(
        id=m["id"],
        name=m["name"],
        kind=m["kind"],
        roles=tuple(r for r in str(m["roles"]).split(",") if r),
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        revoked_at=m["revoked_at"],
    )


def _check_roles(roles: Sequence[str]) -> tuple[str, ...]:
    wanted = tuple(sorted({r.strip() for r in roles if r.strip()}))
    if not wanted:
        raise InvalidInputError("a principal needs at least one role", field="role")
    known = get_policy_engine().roles
    unknown = [r for r in wanted if r not in known]
    if unknown:
        raise InvalidInputError(
            f"unknown role(s) {', '.join(unknown)}; the policy knows: {', '.join(sorted(known))}",
            field="role",
        )
    return wanted


def valid_name(name: str) -> bool:
    """Whether ``name`` is a well-formed principal name (1-64 letters, digits, ``_.@-``)."""
    return _NAME.match(name) is not None


def create(
    *,
    runtime: Runtime,
    name: str,
    roles: Sequence[str],
    kind: str = "person",
    expires_in: timedelta | None = None,
    clock: Clock = utcnow,
    audit: Callable[[Connection, PrincipalInfo], object] | None = None,
) -> CreatedPrincipal:
    """Create a principal holding ``roles`` (each known to the policy); return it with its token.

    ``audit`` is called with the transaction and the new principal before it commits: the
    principal and its audit record are kept together, or neither is.

    Raises ``ConflictError`` if the name is taken, ``InvalidInputError`` for a bad name, kind,
    role or expiry.
    """
    if not valid_name(name):
        raise InvalidInputError(
            "a principal name is 1-64 letters, digits, '_', '.', '@' or '-'", field="name"
        )
    if kind not in KINDS:
        raise InvalidInputError(f"kind must be one of {', '.join(KINDS)}", field="kind")
    if expires_in is not None and expires_in <= timedelta(0):
        raise InvalidInputError("expiry must be in the future", field="expires_in")
    if expires_in is not None and expires_in > MAX_TOKEN_LIFETIME:
        raise InvalidInputError("a token lives at most 10 years (3650 days)", field="expires_in")
    role_tuple = _check_roles(roles)
    now = clock()
    token = new_token()
    values = {
        "id": new_principal_id(),
        "name": name,
        "kind": kind,
        "roles": ",".join(role_tuple),
        "token_hash": token_digest(token),
        "created_at": now,
        "expires_at": now + expires_in if expires_in is not None else None,
        "revoked_at": None,
    }
    with (
        taken_name_is_conflict(f"a principal named {name!r} already exists"),
        runtime.data_engine.begin() as conn,
    ):
        taken = conn.execute(sa.select(PRINCIPALS.c.id).where(PRINCIPALS.c.name == name)).first()
        if taken is not None:
            raise ConflictError(f"a principal named {name!r} already exists")
        conn.execute(sa.insert(PRINCIPALS).values(**values))
        info = PrincipalInfo(
            id=str(values["id"]),
            name=name,
            kind=kind,
            roles=role_tuple,
            created_at=now,
            expires_at=cast(datetime | None, values["expires_at"]),
            revoked_at=None,
        )
        if audit is not None:
            audit(conn, info)
    return CreatedPrincipal(principal=info, token=token)


_LOOKUP = sa.select(
    PRINCIPALS.c.id,
    PRINCIPALS.c.name,
    PRINCIPALS.c.kind,
    PRINCIPALS.c.roles,
    PRINCIPALS.c.token_hash,
    PRINCIPALS.c.created_at,
    PRINCIPALS.c.expires_at,
    PRINCIPALS.c.revoked_at,
).where(PRINCIPALS.c.token_hash == sa.bindparam("digest"))


class _AuthCache:
    """Verified principals by token digest, each reused for a few seconds (bounded size).

    Only successful lookups are cached; a revocation in this process drops the entry at once.
    """

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._entries: dict[str, tuple[float, PrincipalInfo]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str, ttl: float) -> PrincipalInfo | None:
        found = self._entries.get(digest)
        if found is None or time.monotonic() - found[0] > ttl:
            return None
        return found[1]

    def put(self, digest: str, info: PrincipalInfo) -> None:
        with self._lock:
            if len(self._entries) >= self._size:
                self._entries.clear()
            self._entries[digest] = (time.monotonic(), info)

    def drop(self, principal_id: str | None = None) -> None:
        with self._lock:
            if principal_id is None:
                self._entries.clear()
            else:
                for key in [k for k, (_, i) in self._entries.items() if i.id == principal_id]:
                    del self._entries[key]


_auth_cache = _AuthCache()


def forget_authentications() -> None:
    """Empty this process's authentication cache (tests, or after bulk changes)."""
    _auth_cache.drop()


def authenticate(*, runtime: Runtime, token: str | None, clock: Clock = utcnow) -> PrincipalInfo:
    """Return the active principal holding ``token``.

    Raises ``AuthenticationError`` (one message for every case, so a caller cannot tell an
    unknown token from a revoked one) when the token is missing, unknown, expired or revoked.
    A principal verified less than ``auth_cache_seconds`` ago is reused without a database read
    (its expiry is still checked against ``clock``).
    """
    digest = token_digest(token or "")
    ttl = runtime.settings.auth_cache_seconds
    info = _auth_cache.get(digest, ttl) if ttl > 0 and token else None
    if info is None:
        with runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
            row = conn.execute(_LOOKUP, {"digest": digest}).first()
        stored = row._mapping["token_hash"] if row is not None else _DUMMY_DIGEST
        matches = hmac.compare_digest(stored.encode(), digest.encode())
        if row is None or not matches or not token:
            raise AuthenticationError(_UNAUTHENTICATED)
        info = _info(row._mapping)
        if ttl > 0 and info.revoked_at is None:
            _auth_cache.put(digest, info)
    if info.state(clock()) != "active":
        raise AuthenticationError(_UNAUTHENTICATED)
    return info


def cached_principal(
    *, runtime: Runtime, token: str | None, clock: Clock = utcnow
) -> PrincipalInfo | None:
    """The active principal holding ``token`` if this process verified it less than
    ``auth_cache_seconds`` ago, else ``None`` (then call :func:`authenticate`, which reads the
    database and raises for a bad token). Never touches the database, so an event loop may call
    it."""
    ttl = runtime.settings.auth_cache_seconds
    if ttl <= 0 or not token:
        return None
    info = _auth_cache.get(token_digest(token), ttl)
    if info is None or info.state(clock()) != "active":
        return None
    return info


def list_principals(*, runtime: Runtime) -> list[PrincipalInfo]:
    """Every principal, by name (tokens are never shown: they are not stored)."""
    with runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        rows = conn.execute(sa.select(PRINCIPALS).order_by(PRINCIPALS.c.name)).all()
    return [_info(r._mapping) for r in rows]


def get_by_name(*, runtime: Runtime, name: str) -> PrincipalInfo:
    """The principal named ``name``; ``NotFoundError`` if there is none."""
    with runtime.data_engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        row = conn.execute(sa.select(PRINCIPALS).where(PRINCIPALS.c.name == name)).first()
    if row is None:
        raise NotFoundError(f"no principal named {name!r}")
    return _info(row._mapping)


def revoke(
    *,
    runtime: Runtime,
    name: str,
    clock: Clock = utcnow,
    audit: Callable[[Connection, PrincipalInfo], object] | None = None,
) -> PrincipalInfo:
    """Revoke ``name``'s token now (idempotent: an already revoked principal keeps its time);
    ``audit`` as for :func:`create`, in the same transaction."""
    with runtime.data_engine.begin() as conn:
        row = conn.execute(sa.select(PRINCIPALS).where(PRINCIPALS.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no principal named {name!r}")
        if row._mapping["revoked_at"] is None:
            conn.execute(
                sa.update(PRINCIPALS).where(PRINCIPALS.c.name == name).values(revoked_at=clock())
            )
        row = conn.execute(sa.select(PRINCIPALS).where(PRINCIPALS.c.name == name)).one()
        info = _info(row._mapping)
        if audit is not None:
            audit(conn, info)
    _auth_cache.drop(info.id)
    return info
