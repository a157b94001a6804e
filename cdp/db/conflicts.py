"""A name taken between the check and the insert: a conflict, not a server error.

Creating a named thing (principal, source, destination, schedule) checks that the name is free
and then inserts it, in one transaction. On SQLite the transaction holds the write lock
(``BEGIN IMMEDIATE``) so two creators cannot interleave; on PostgreSQL both can pass the check
and the second insert then breaks the name's unique index. Either way the caller gets the same
:class:`~cdp.errors.ConflictError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import IntegrityError

from cdp.errors import ConflictError


@contextmanager
def taken_name_is_conflict(message: str) -> Iterator[None]:
    """Turn a unique-constraint violation inside the block into ``ConflictError(message)``."""
    try:
        yield
    except IntegrityError:
        raise ConflictError(message) from None
