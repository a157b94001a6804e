"""Authentication of event sources by write key, as Segment does: HTTP Basic with the write key as
user name, or — without an Authorization header — a ``writeKey`` at the top of the JSON body (what
analytics.js sends from a browser: a ``text/plain`` post with the key in the body, which avoids a
CORS preflight).

``require_source`` is the dependency every ``/v1`` ingestion route takes: it takes the key from
the header, or from the body when there is no header (the body is then read first, bounded and
parsed once: :func:`cdp.api.segment_body.read_body`; a body too large or not JSON is answered
413/400 before the key is judged), hashes the key and looks the digest up (constant-time
comparison in :func:`cdp.ingest.sources.authenticate_source`); anything else is a 401 with a
Basic challenge. An Authorization header decides when present: a body key does not override it.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import Depends, Request

from cdp.api.deps import RuntimeDep
from cdp.api.limits import RequestLimits, source_key
from cdp.api.segment_body import MAX_BATCH_BYTES, MAX_MESSAGE_BYTES, read_body
from cdp.errors import AuthenticationError
from cdp.ingest.sources import SourceInfo, authenticate_source
from cdp.settings import get_settings

REQUIRED = "HTTP Basic authentication with a write key, or a writeKey in the body, is required"


def _unauthenticated(message: str) -> AuthenticationError:
    error = AuthenticationError(message)
    error.challenge = 'Basic realm="cdp"'  # type: ignore[attr-defined]
    return error


async def body_write_key(request: Request) -> str | None:
    """The body's top-level ``writeKey`` (a batch's, or a single message's own) when the request
    has no Authorization header; None otherwise (the body is then not read here)."""
    if "authorization" in request.headers:
        return None
    # the route's own limit: a single message is read no further than 32 KB before its key
    batch = request.url.path.rsplit("/", 1)[-1] in ("batch", "b")
    body: Any = await read_body(request, MAX_BATCH_BYTES if batch else MAX_MESSAGE_BYTES)
    key = body.get("writeKey") if isinstance(body, dict) else None
    return key if isinstance(key, str) else None


def _basic_write_key(header: str) -> str:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise _unauthenticated(REQUIRED)
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _unauthenticated("malformed Basic credentials") from None
    return decoded.partition(":")[0]


def require_source(
    request: Request,
    runtime: RuntimeDep,
    body_key: Annotated[str | None, Depends(body_write_key)],
) -> SourceInfo:
    """The source whose write key is the Basic user name (the password is ignored), or, without
    an Authorization header, the body's ``writeKey``."""
    header = request.headers.get("authorization")
    if header is not None:
        write_key = _basic_write_key(header)
    elif body_key is not None:
        write_key = body_key
        limits: RequestLimits | None = getattr(request.state, "limits", None)
        if limits is not None:  # the header's key was limited before the body was read
            limits.take(source_key(write_key.encode()), get_settings())
    else:
        raise _unauthenticated(REQUIRED)
    if not write_key or len(write_key) > 256:
        raise _unauthenticated("unknown or revoked write key")
    source = authenticate_source(runtime=runtime, write_key=write_key)
    request.state.source = source.name
    return source


SourceDep = Annotated[SourceInfo, Depends(require_source)]
