"""Files a command writes: checked before the work starts, written without a traceback.

A command that reads personal data records the read in the audit log before it writes its
output, so an output path that cannot be written is refused up front (exit 2) instead of failing
after the read was recorded; a write that still fails is a clear error, not an internal one.
"""

from __future__ import annotations

import os
from pathlib import Path

from cdp.errors import InvalidInputError


def writable(path: Path, option: str) -> Path:
    """``path`` if a file can be written there; otherwise :class:`InvalidInputError`."""
    parent = path.parent
    if path.is_dir():
        raise InvalidInputError(f"{option}: {path} is a directory", field=option)
    if not parent.is_dir():
        raise InvalidInputError(f"{option}: the directory {parent} does not exist", field=option)
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InvalidInputError(f"{option}: {path} cannot be written", field=option)
    return path


def write_file(path: Path, data: str | bytes, option: str, *, private: bool = False) -> None:
    """Write ``data`` (text as UTF-8) to ``path``; ``private`` creates it readable by its owner
    only (mode 0600 from the start: no moment where another user could open it)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o666)
        if private:
            os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
    except OSError as exc:
        raise InvalidInputError(
            f"{option}: {path} cannot be written ({exc.strerror})", field=option
        ) from None
