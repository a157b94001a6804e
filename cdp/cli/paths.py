"""Files a command writes: checked before the work starts, written without a traceback.

A command that reads personal data records the read in the audit log before it writes its
output, so an output path that cannot be written is refused up front (exit 2) instead of failing
after the read was recorded; a write that still fails is a clear error, not an internal one.

An output never goes through a link or into a device: a path that is a symbolic link, a pipe or
a device is refused, and the file is written to a new temporary file beside it (created
exclusively, never following a link) that is then renamed over the path. So a link planted where
a report is expected (``/tmp/report.html`` -> someone's ``~/.bashrc``) is neither followed nor
truncated, and a reader never sees a half-written file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from cdp.errors import InvalidInputError


def plain_file_or_absent(path: Path, option: str) -> Path:
    """``path`` unless it is a symbolic link, a directory or another non-regular file (a pipe,
    a device); otherwise :class:`InvalidInputError`."""
    if path.is_symlink():
        raise InvalidInputError(f"{option}: {path} is a symbolic link", field=option)
    if path.is_dir():
        raise InvalidInputError(f"{option}: {path} is a directory", field=option)
    if path.exists() and not path.is_file():
        raise InvalidInputError(f"{option}: {path} is not a regular file", field=option)
    return path


def writable(path: Path, option: str) -> Path:
    """``path`` if a file can be written there; otherwise :class:`InvalidInputError`."""
    parent = path.parent
    plain_file_or_absent(path, option)
    if not parent.is_dir():
        raise InvalidInputError(f"{option}: the directory {parent} does not exist", field=option)
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InvalidInputError(f"{option}: {path} cannot be written", field=option)
    return path


@contextlib.contextmanager
def output_file(path: Path, option: str, *, private: bool = True) -> Iterator[IO[bytes]]:
    """A binary handle on a new temporary file beside ``path``, renamed over ``path`` when the
    block ends without an error (removed otherwise); ``private`` (the default: a file the CLI
    writes may hold personal data or name subjects): mode 0600 from the start, else the mode a
    new file gets under the umask (aggregate outputs only, such as a metrics chart)."""
    writable(path, option)
    tmp: Path | None = None
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=".cdp-", suffix=".tmp")  # 0600
        tmp = Path(name)
        with os.fdopen(fd, "wb") as handle:
            if not private:
                umask = os.umask(0)
                os.umask(umask)
                os.fchmod(handle.fileno(), 0o666 & ~umask)
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)  # replaces a link itself; never writes through it
        tmp = None
    except OSError as exc:
        raise InvalidInputError(
            f"{option}: {path} cannot be written ({exc.strerror})", field=option
        ) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()


def write_file(path: Path, data: str | bytes, option: str, *, private: bool = True) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` (see :func:`output_file`)."""
    with output_file(path, option, private=private) as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
