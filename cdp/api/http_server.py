"""How uvicorn serves the API: one set of options for ``cdp serve`` and the API benchmark.

``http="h11"``: uvicorn's pure-Python HTTP/1.1 parser, whose incomplete-event limit bounds how
much of an unfinished request line with its headers is buffered (16 KiB here; a head that arrives
whole in one read, up to about 64 KiB, passes). With ``uvicorn[standard]`` installed, uvicorn would
otherwise pick httptools, which has no such bound: one connection sending a 200 MB header grew
a worker by 230 MB before any authentication or rate limit could apply. The audited profile read
serves as many requests a second under either parser (bench/api.py, docs/access-and-audit.md);
what h11 costs is parsing time, about 0.09 ms of CPU a request.
"""

from __future__ import annotations

from typing import Any, Final

MAX_REQUEST_HEAD_BYTES: Final = 16 * 1024
"""The most a request line and its headers may take (uvicorn answers 400 past it)."""

UVICORN_OPTIONS: Final[dict[str, Any]] = {
    "http": "h11",
    "h11_max_incomplete_event_size": MAX_REQUEST_HEAD_BYTES,
    "timeout_keep_alive": 5,
}
"""Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config`` besides the app, host and port."""
