"""Authentication of event sources: HTTP Basic with the write key as user name (as Segment does).

``require_source`` is the dependency every ``/v1`` ingestion route takes: it parses the header,
hashes the key and looks the digest up (constant-time comparison in
:func:`cdp.ingest.sources.authenticate_source`); anything else is a 401 with a Basic challenge.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import Depends, Request

from cdp.api.deps import RuntimeDep
from cdp.errors import AuthenticationError
from cdp.ingest.sources import SourceInfo, authenticate_source


def _unauthenticated(message: str) -> AuthenticationError:
    error = AuthenticationError(message)
    error.challenge = 'Basic realm="cdp"'  # type: ignore[attr-defined]
    return error


def require_source(request: Request, runtime: RuntimeDep) -> SourceInfo:
    """The source whose write key is the Basic user name (the password is ignored)."""
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise _unauthenticated("HTTP Basic authentication with a write key is required")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _unauthenticated("malformed Basic credentials") from None
    write_key = decoded.partition(":")[0]
    if not write_key or len(write_key) > 256:
        raise _unauthenticated("unknown or revoked write key")
    source = authenticate_source(runtime=runtime, write_key=write_key)
    request.state.source = source.name
    return source


SourceDep = Annotated[SourceInfo, Depends(require_source)]
