"""Tables of access control: principals (people and services) and their bearer credentials.

A token is never stored: only its SHA-256 digest, which is enough for 256-bit random tokens (no
password-style slow KDF is needed when the secret cannot be guessed). Roles are stored as a sorted,
comma-separated list of role names; the policy in ``policies/`` says what each role may do.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlmodel import Field, SQLModel

from cdp.clock import utcnow
from cdp.db.types import UtcDateTime


def new_principal_id() -> str:
    """A random principal id (64 bits, hex)."""
    return secrets.token_hex(8)


class Principal(SQLModel, table=True):
    """Whoever calls cdp: a person or a service, holding roles and one bearer credential."""

    __tablename__ = "principals"

    id: str = Field(default_factory=new_principal_id, primary_key=True, max_length=16)
    name: str = Field(max_length=64, unique=True)
    kind: str = Field(default="person", max_length=16, description="person | service")
    roles: str = Field(max_length=256, description="Comma-separated role names, sorted.")
    token_hash: str = Field(
        max_length=64, unique=True, description="SHA-256 hex digest of the bearer token."
    )
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    expires_at: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)
    revoked_at: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)
